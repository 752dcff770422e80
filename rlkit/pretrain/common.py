"""Plumbing shared by the supervised stages: seeded blocks, tiny GPT-2 configs, encoding,
batching, the one fit loop, JSONL writing and held-out splits."""

from __future__ import annotations

import contextlib
import json
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    GPT2Config,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from rlkit.errors import ConfigError

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



def split_holdout(items: Sequence[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded (train, held-out) split; held-out gets ``fraction`` of the items (at least
    one when there are two or more, none when ``fraction`` is 0)."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_eval = 0 if fraction <= 0 or len(items) < 2 else max(1, round(fraction * len(items)))
    held = sorted(order[:n_eval])
    kept = sorted(order[n_eval:])
    return [items[i] for i in kept], [items[i] for i in held]
