"""Word-level tokenizers for the built-in worlds and for users' own texts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from rlkit.errors import ConfigError

PAD, EOS, UNK, BOS = "[PAD]", "[EOS]", "[UNK]", "[BOS]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, EOS, UNK, BOS)


# ---------------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------------


def build_word_tokenizer(
    words: Iterable[str], *, padding_side: str = "left"
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``words`` with [PAD] [EOS] [UNK] [BOS] as ids 0–3.

    Word-level keeps tiny models tiny and makes every token a readable word. Encoding adds
    no special tokens (a prompt must be continued, not closed by EOS); decoding with
    ``skip_special_tokens=True`` joins the words with single spaces. pad ≠ eos, so masks
    never hide a real EOS.
    """
    backend = word_level_backend(words)
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return wrap_backend(backend, padding_side=padding_side)


def word_level_backend(tokens: Iterable[str]) -> Tokenizer:
    """A ``tokenizers`` word-level model over [PAD] [EOS] [UNK] [BOS] (ids 0–3) then
    ``tokens`` in order (repeats ignored); its pre-tokenizer and decoder are the caller's."""
    vocab: dict[str, int] = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))


def wrap_backend(backend: Tokenizer, *, padding_side: str = "left") -> PreTrainedTokenizerFast:
    """``backend`` as a transformers tokenizer with rlkit's special tokens (pad ≠ eos)."""
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        bos_token=BOS,
        padding_side=padding_side,
        clean_up_tokenization_spaces=False,
    )


def word_tokenizer_from_texts(
    texts: Iterable[str], *, max_vocab: int | None = None
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer for a user's corpus: the ``max_vocab`` most frequent words
    (ties broken alphabetically, so the vocabulary is a pure function of the texts)."""
    split = pre_tokenizers.Whitespace()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(piece for piece, _ in split.pre_tokenize_str(text))
    for token in SPECIAL_TOKENS:
        counts.pop(token, None)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    return build_word_tokenizer(ranked[:max_vocab] if max_vocab else ranked)


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise ConfigError("The tokenizer needs both an EOS and a pad token.")
    if tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ConfigError(
            "The tokenizer's pad token equals its EOS token; masks would hide the real EOS and "
            "the model would never learn to stop. Give it a distinct pad token."
        )


def _save_tokenizer(
    tokenizer: PreTrainedTokenizerBase, out_dir: Path, padding_side: str, max_length: int
) -> None:
    """Save with the padding side and context length its model needs, leaving the caller's
    tokenizer unchanged."""
    before = tokenizer.padding_side, tokenizer.model_max_length
    tokenizer.padding_side, tokenizer.model_max_length = padding_side, max_length
    try:
        tokenizer.save_pretrained(out_dir)
    finally:
        tokenizer.padding_side, tokenizer.model_max_length = before
