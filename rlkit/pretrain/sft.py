"""Supervised fine-tuning: the language-model loss on demonstrations, and held-out perplexity."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlkit.errors import DataError
from rlkit.pretrain.common import (
    _batches,
    _check_steps,
    _encode,
    _fit,
    _gpt2_config,
    _n_params,
    _pad_right,
    quiet_transformers,
    seeded,
)
from rlkit.pretrain.tokenizer import _check_tokenizer, _save_tokenizer

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
