"""Supervised fine-tuning and reward-model training for tiny models, on any text.

These are the two stages that come before RLHF (Stiennon et al. 2020; Ouyang et al. 2022):
an SFT policy, trained with the language-model loss on demonstrations, and a reward model,
trained with the pairwise ranking loss on preferences. They build the built-in review world,
and ``rlkit sft`` / ``rlkit train-rm`` run them on a user's own files, so a comparison can
start from the user's data without another framework.

Models are tiny GPT-2s built from a config mapping and trained on CPU in seconds; everything
is seeded and saved with ``save_pretrained`` (safetensors) next to its tokenizer, so the
engine loads them exactly like a hub model.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from rlkit.errors import ConfigError, DataError

PAD, EOS, UNK, BOS = "[PAD]", "[EOS]", "[UNK]", "[BOS]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, EOS, UNK, BOS)

# ---------------------------------------------------------------------------------------------
# data files
# ---------------------------------------------------------------------------------------------


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line, keys in insertion order (byte-stable for equal input)."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def join_prompt_response(prompt: str, response: str) -> str:
    """The text a reward model scores: ``prompt + " " + response`` (no space for no prompt)."""
    return f"{prompt} {response}" if prompt else response


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
    vocab: dict[str, int] = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
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


# ---------------------------------------------------------------------------------------------
# shared plumbing
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and load reports inside the block: building a
    world saves and loads models many times, and only the figures are worth printing."""
    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch and use deterministic kernels inside the block, restoring both after, so
    training here never disturbs the caller's random stream."""
    was = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # warn_only: a kernel without a deterministic variant (some CUDA ops) must not fail
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was, warn_only=warn_only)


def _gpt2_config(
    model_config: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase, **extra: Any
) -> GPT2Config:
    """GPT2Config from the user's mapping; dropout 0 (SFT and RL must see the same function)
    and the tokenizer's special ids unless the mapping says otherwise."""
    options: dict[str, Any] = {
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "summary_first_dropout": 0.0,
    }
    options.update(model_config)
    bos = tokenizer.bos_token_id
    options.update(
        vocab_size=len(tokenizer),
        bos_token_id=bos if bos is not None else tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )
    try:
        return GPT2Config(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model config: {exc}") from None


def _encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_len: int, eos: bool
) -> list[list[int]]:
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    suffix = [tokenizer.eos_token_id] if eos else []
    return [(row + suffix)[:max_len] for row in ids]


def _pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, *(len(r) for r in rows))  # an all-empty batch still has one (pad) column
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def _batches(n: int, batch_size: int, steps: int, seed: int) -> Iterator[list[int]]:
    """``steps`` index batches: seeded reshuffles of range(n), epoch after epoch."""
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    for _ in range(steps):
        batch: list[int] = []
        while len(batch) < min(batch_size, n):
            if not order:
                order = torch.randperm(n, generator=generator).tolist()
            batch.append(order.pop())
        yield batch


def _optimizer(model: torch.nn.Module, lr: float, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW with a short linear warm-up and cosine decay to a tenth: stable and quick for
    the few hundred steps a tiny model gets."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _fit(
    model: torch.nn.Module, batches: Iterable[list[int]], lr: float, steps: int,
    loss_of: Callable[[list[int]], torch.Tensor],
) -> list[float]:
    """The training loop both stages share: AdamW + schedule, grad-norm clip 1.0; the losses."""
    optimizer, schedule = _optimizer(model, lr, steps)
    model.train()
    losses: list[float] = []
    for batch_ids in batches:
        loss = loss_of(batch_ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.detach().item())
    model.eval()
    return losses


def _check_steps(steps: int, lr: float, batch_size: int) -> None:
    if steps < 1 or batch_size < 1 or not lr > 0:
        raise ConfigError(
            f"steps and batch_size must be ≥ 1 and lr > 0 (got {steps}, {batch_size}, {lr})."
        )


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# SFT
# ---------------------------------------------------------------------------------------------


def _lm_batch(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    ids, mask = _pad_right(rows, pad_id)
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


@torch.no_grad()
def perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    batch_size: int = 256,
) -> float:
    """exp(mean NLL per predicted token) of ``text + eos``: the EOS counts, because knowing
    where a text ends is part of modelling it."""
    model.eval()
    rows = _encode(tokenizer, texts, model.config.n_positions, eos=True)
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = _lm_batch(rows[start : start + batch_size], tokenizer.pad_token_id)
        batch = {key: value.to(model.device) for key, value in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        nll = F.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="sum"
        )
        total += float(nll)
        count += int((labels != -100).sum())
    return math.exp(total / max(1, count))


def train_sft(
    texts: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    *,
    model_config: Mapping[str, Any],
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    eval_texts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train a tiny GPT-2 with the language-model loss on ``text + eos``; save it (and the
    tokenizer, left padding) to ``out_dir``. Returns figures: parameters, final train loss
    and, with ``eval_texts``, held-out perplexity."""
    _check_tokenizer(tokenizer)
    _check_steps(steps, lr, batch_size)
    if not texts:
        raise DataError("No training texts.")
    config = _gpt2_config(model_config, tokenizer)
    out = Path(out_dir)
    with seeded(seed), quiet_transformers():
        model = GPT2LMHeadModel(config)
        rows = _encode(tokenizer, texts, config.n_positions, eos=True)
        losses = _fit(
            model, _batches(len(rows), batch_size, steps, seed), lr, steps,
            lambda ids: model(**_lm_batch([rows[i] for i in ids], tokenizer.pad_token_id)).loss,
        )
        figures: dict[str, Any] = {
            "params": _n_params(model),
            "train_texts": len(rows),
            "steps": steps,
            "train_loss": sum(losses[-20:]) / len(losses[-20:]),
        }
        if eval_texts:
            figures["eval_texts"] = len(eval_texts)
            figures["eval_perplexity"] = perplexity(model, tokenizer, eval_texts)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(out)
    _save_tokenizer(tokenizer, out, "left", config.n_positions)
    return figures


# ---------------------------------------------------------------------------------------------
# reward model
# ---------------------------------------------------------------------------------------------


def ranking_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Pairwise (Bradley–Terry) ranking loss, mean over pairs:

        L = −log σ(r(x, y_w) − r(x, y_l))

    (Christiano et al. 2017; Stiennon et al. 2020, eq. 1)."""
    return -F.logsigmoid(chosen - rejected).mean()


class _PairTexts:
    """The distinct texts of a pair set, encoded once, and each pair as two indices into
    them: a text shared by several pairs (K responses to one prompt, all pairs ranked, as
    in InstructGPT) is scored once per batch instead of once per pair."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Mapping[str, str]], max_len: int
    ) -> None:
        index: dict[str, int] = {}
        self.pairs: list[tuple[int, int]] = []
        for p in pairs:
            chosen = join_prompt_response(p["prompt"], p["chosen"])
            rejected = join_prompt_response(p["prompt"], p["rejected"])
            self.pairs.append(
                (index.setdefault(chosen, len(index)), index.setdefault(rejected, len(index)))
            )
        self.rows = _encode(tokenizer, list(index), max_len, eos=False)

    def scores(
        self, model: PreTrainedModel, pair_ids: Sequence[int], pad_id: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen, rejected) scores of the given pairs, one forward pass over their texts."""
        texts = sorted({t for i in pair_ids for t in self.pairs[i]})
        where = {t: k for k, t in enumerate(texts)}
        scores = _scores(model, [self.rows[t] for t in texts], pad_id)
        chosen = torch.tensor([where[self.pairs[i][0]] for i in pair_ids])
        rejected = torch.tensor([where[self.pairs[i][1]] for i in pair_ids])
        return scores[chosen], scores[rejected]


def _prompt_groups(pairs: Sequence[Mapping[str, str]], max_size: int) -> list[list[int]]:
    """Runs of adjacent pairs with the same prompt, at most ``max_size`` long (one group per
    pair in ordinary data; a file where every prompt is "" still gets many groups)."""
    groups: list[list[int]] = []
    for i, pair in enumerate(pairs):
        last = groups[-1] if groups else None
        if last and len(last) < max_size and pairs[last[0]]["prompt"] == pair["prompt"]:
            last.append(i)
        else:
            groups.append([i])
    return groups


def _group_batches(
    groups: Sequence[list[int]], batch_size: int, steps: int, seed: int
) -> Iterator[list[int]]:
    """``steps`` batches of whole groups (at least ``batch_size`` pairs, or all of them),
    groups reshuffled each epoch, so a group's shared texts are scored together."""
    generator = torch.Generator().manual_seed(seed)
    total = sum(len(g) for g in groups)
    order: list[int] = []
    for _ in range(steps):
        batch: list[int] = []
        while len(batch) < min(batch_size, total):
            if not order:
                order = torch.randperm(len(groups), generator=generator).tolist()
            batch.extend(groups[order.pop()])
        yield batch


def _scores(model: PreTrainedModel, rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    ids, mask = _pad_right(rows, pad_id)
    return model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits[:, 0]


@torch.no_grad()
def pairwise_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Mapping[str, str]],
    *,
    batch_size: int = 256,
) -> tuple[float, float]:
    """(accuracy, mean ranking loss) of ``model`` on ``pairs``; a tie counts half."""
    model.eval()
    texts = _PairTexts(tokenizer, pairs, model.config.n_positions)
    correct, loss = 0.0, 0.0
    for start in range(0, len(pairs), batch_size):
        ids = range(start, min(start + batch_size, len(pairs)))
        w, rj = texts.scores(model, ids, tokenizer.pad_token_id)
        correct += float((w > rj).sum()) + 0.5 * float((w == rj).sum())
        loss += float(ranking_loss(w, rj)) * len(w)
    return correct / len(pairs), loss / len(pairs)


def train_reward_model(
    pairs: Sequence[Mapping[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    *,
    model_config: Mapping[str, Any],
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    eval_pairs: Sequence[Mapping[str, str]] | None = None,
    init_from: str | Path | None = None,
) -> dict[str, Any]:
    """Train a tiny ``GPT2ForSequenceClassification`` (one score, read at the last non-pad
    token) with :func:`ranking_loss` on ``pairs`` (``prompt``, ``chosen``, ``rejected``);
    the model scores ``prompt + " " + response``. Saves it with a right-padding tokenizer.
    Returns figures including, with ``eval_pairs``, held-out pairwise accuracy.

    Adjacent pairs with the same prompt form a group that is always batched whole, so
    data written as all pairs of K responses per prompt trains at the cost of K texts, not
    K(K−1) (Ouyang et al. 2022, §3.5). ``init_from`` starts from a causal LM's weights (e.g.
    the SFT policy, as InstructGPT does) instead of ``model_config``."""
    _check_tokenizer(tokenizer)
    _check_steps(steps, lr, batch_size)
    if not pairs:
        raise DataError("No preference pairs.")
    config = _gpt2_config(model_config, tokenizer, num_labels=1)
    out = Path(out_dir)
    with seeded(seed), quiet_transformers():
        if init_from is not None:
            model = GPT2ForSequenceClassification.from_pretrained(init_from, num_labels=1)
            if model.config.vocab_size < len(tokenizer):
                raise ConfigError(
                    f"The model in '{init_from}' has {model.config.vocab_size} token embeddings "
                    f"but the tokenizer has {len(tokenizer)} tokens; use that model's tokenizer."
                )
            model.config.pad_token_id = tokenizer.pad_token_id
        else:
            model = GPT2ForSequenceClassification(config)
        texts = _PairTexts(tokenizer, pairs, model.config.n_positions)
        batches = _group_batches(_prompt_groups(pairs, batch_size), batch_size, steps, seed)
        losses = _fit(
            model, batches, lr, steps,
            lambda ids: ranking_loss(*texts.scores(model, ids, tokenizer.pad_token_id)),
        )
        figures: dict[str, Any] = {
            "params": _n_params(model),
            "train_pairs": len(pairs),
            "steps": steps,
            "train_loss": sum(losses[-20:]) / len(losses[-20:]),
        }
        if eval_pairs:
            accuracy, eval_loss = pairwise_accuracy(model, tokenizer, eval_pairs)
            figures.update(eval_pairs=len(eval_pairs), eval_accuracy=accuracy, eval_loss=eval_loss)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(out)
    _save_tokenizer(tokenizer, out, "right", model.config.n_positions)
    return figures


# ---------------------------------------------------------------------------------------------
# sampling and scoring (to label preference data and to measure a policy)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One sampled response (without the prompt); ``finished`` is whether it emitted EOS."""

    prompt: str
    response: str
    finished: bool


@torch.no_grad()
def sample_responses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    n_per_prompt: int,
    seed: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    batch_size: int = 256,
) -> list[Sample]:
    """Pure ancestral samples (no top-k/top-p), ``n_per_prompt`` per prompt in prompt order,
    cut at the first EOS. Left padding with position ids from the mask (``generate`` does
    that), so a batched prompt is continued exactly as it would be alone."""
    model.eval()
    before = tokenizer.padding_side
    tokenizer.padding_side = "left"
    expanded = [p for p in prompts for _ in range(n_per_prompt)]
    samples: list[Sample] = []
    try:
        with seeded(seed):
            for start in range(0, len(expanded), batch_size):
                chunk = expanded[start : start + batch_size]
                enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
                enc = enc.to(model.device)
                out = model.generate(  # type: ignore[operator]
                    **enc,
                    do_sample=True,
                    temperature=temperature,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
                for prompt, row in zip(
                    chunk, out[:, enc["input_ids"].shape[1] :].tolist(), strict=True
                ):
                    finished = tokenizer.eos_token_id in row
                    if finished:
                        row = row[: row.index(tokenizer.eos_token_id)]
                    text = str(tokenizer.decode(row, skip_special_tokens=True))
                    samples.append(Sample(prompt, text, finished))
    finally:
        tokenizer.padding_side = before
    return samples


@torch.no_grad()
def reward_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    batch_size: int = 256,
) -> list[float]:
    """The reward model's score of each ``prompt + " " + response``."""
    model.eval()
    texts = [join_prompt_response(p, r) for p, r in zip(prompts, responses, strict=True)]
    rows = _encode(tokenizer, texts, model.config.n_positions, eos=False)
    scores: list[float] = []
    for start in range(0, len(rows), batch_size):
        scores.extend(
            _scores(model, rows[start : start + batch_size], tokenizer.pad_token_id).tolist()
        )
    return scores


def split_holdout(items: Sequence[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded (train, held-out) split; held-out gets ``fraction`` of the items (at least
    one when there are two or more, none when ``fraction`` is 0)."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_eval = 0 if fraction <= 0 or len(items) < 2 else max(1, round(fraction * len(items)))
    held = sorted(order[:n_eval])
    kept = sorted(order[n_eval:])
    return [items[i] for i in kept], [items[i] for i in held]
