"""The benchmark workloads and the files both frameworks load: one tokenizer, one policy, one
reward model, one prompt set and one preference set per workload.

Everything is built once, seeded, and saved with ``save_pretrained`` under a work directory,
so rlkit and TRL start from byte-identical weights and data. This module imports only torch,
transformers and tokenizers (no rlkit, no trl): it runs in either virtual environment.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

PAD, EOS, UNK, BOS = "[PAD]", "[EOS]", "[UNK]", "[BOS]"
SPECIAL_TOKENS = (PAD, EOS, UNK, BOS)  # ids 0-3, as in rlkit.training.build_word_tokenizer

DEFAULT_WORK_DIR = Path(os.environ.get("RLKIT_BENCH_DIR", Path(tempfile.gettempdir()) / "rlkit-bench"))
FORMAT = 1  # bump when the artifacts change, so a stale cache is rebuilt


@dataclass(frozen=True)
class Workload:
    name: str
    n_layer: int
    n_embd: int
    n_head: int
    vocab: int  # including the 4 special tokens
    batch: int  # prompts per training step
    prompt_len: int  # tokens per prompt (every prompt has exactly this many)
    response_len: int  # L: tokens per completion (every completion has exactly L)
    lr: float = 1e-4
    n_train_prompts: int = 512
    n_eval_prompts: int = 32

    @property
    def n_positions(self) -> int:
        return 1 << (self.prompt_len + self.response_len - 1).bit_length()


WORKLOADS: dict[str, Workload] = {
    "W1": Workload("W1", n_layer=2, n_embd=64, n_head=4, vocab=128, batch=16, prompt_len=8,
                   response_len=16),
    "W2": Workload("W2", n_layer=4, n_embd=256, n_head=4, vocab=1024, batch=32, prompt_len=16,
                   response_len=64),
}


@dataclass(frozen=True)
class Artifacts:
    root: Path
    tokenizer: Path  # also saved beside each model
    policy: Path  # GPT2LMHeadModel, random init
    reward: Path  # GPT2ForSequenceClassification (1 label), random init, same size as the policy
    prompts_train: Path  # JSONL {"prompt": ...}
    prompts_eval: Path
    preferences: Path  # JSONL {"prompt", "chosen", "rejected"}; completions of L-1 words


def words(workload: Workload) -> list[str]:
    return [f"w{i}" for i in range(workload.vocab - len(SPECIAL_TOKENS))]


def build_tokenizer(workload: Workload):
    """A word-level tokenizer (exactly ``vocab`` ids, one token per word, pad != eos), built
    with ``tokenizers`` the way rlkit.training.build_word_tokenizer builds its own."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in words(workload):
        vocab.setdefault(word, len(vocab))
    assert len(vocab) == workload.vocab
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, eos_token=EOS, unk_token=UNK, bos_token=BOS,
        padding_side="left", clean_up_tokenization_spaces=False,
        model_max_length=workload.n_positions,
    )


def _gpt2_config(workload: Workload, tokenizer, **extra):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=workload.vocab, n_positions=workload.n_positions, n_embd=workload.n_embd,
        n_layer=workload.n_layer, n_head=workload.n_head, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **extra,
    )


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _build(workload: Workload, root: Path) -> None:
    import torch
    from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

    tokenizer = build_tokenizer(workload)
    (root / "tokenizer").mkdir(parents=True)
    tokenizer.save_pretrained(root / "tokenizer")

    torch.manual_seed(0)
    policy = GPT2LMHeadModel(_gpt2_config(workload, tokenizer))
    policy.save_pretrained(root / "policy", safe_serialization=True)
    tokenizer.save_pretrained(root / "policy")

    torch.manual_seed(1)
    reward = GPT2ForSequenceClassification(_gpt2_config(workload, tokenizer, num_labels=1))
    reward.save_pretrained(root / "reward", safe_serialization=True)
    tokenizer.save_pretrained(root / "reward")

    vocab = words(workload)
    rng = random.Random(0)

    def text(n: int) -> str:
        return " ".join(rng.choice(vocab) for _ in range(n))

    _write_jsonl(root / "prompts_train.jsonl",
                 [{"prompt": text(workload.prompt_len)} for _ in range(workload.n_train_prompts)])
    _write_jsonl(root / "prompts_eval.jsonl",
                 [{"prompt": text(workload.prompt_len)} for _ in range(workload.n_eval_prompts)])
    # L-1 words + the EOS both frameworks append = exactly L completion tokens
    _write_jsonl(root / "preferences.jsonl", [
        {"prompt": text(workload.prompt_len), "chosen": text(workload.response_len - 1),
         "rejected": text(workload.response_len - 1)}
        for _ in range(workload.n_train_prompts)
    ])
    (root / "workload.json").write_text(json.dumps({"format": FORMAT, **asdict(workload)}))


def prepare(workload: Workload, work_dir: Path | None = None) -> Artifacts:
    """Build (once) and return the workload's files; safe against a concurrent builder."""
    base = Path(work_dir or DEFAULT_WORK_DIR)
    root = base / workload.name
    stamp = root / "workload.json"
    expected = {"format": FORMAT, **asdict(workload)}
    if not (stamp.is_file() and json.loads(stamp.read_text()) == expected):
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{workload.name}-", dir=base))
        try:
            shutil.rmtree(tmp)
            _build(workload, tmp)
            if root.exists():
                shutil.rmtree(root, ignore_errors=True)
            try:
                tmp.rename(root)
            except OSError:  # another process won the race with the same content
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return Artifacts(
        root=root, tokenizer=root / "tokenizer", policy=root / "policy", reward=root / "reward",
        prompts_train=root / "prompts_train.jsonl", prompts_eval=root / "prompts_eval.jsonl",
        preferences=root / "preferences.jsonl",
    )


def get(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise SystemExit(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None
