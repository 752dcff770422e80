"""Samples of an SFT policy for building a world's artifacts (preference pairs, figures).

Why a second sampler beside the engine's (``rlkit.rollout.sample``): a world's artifacts are
pinned by their file hashes (two builds from one seed are byte-identical), and this sampler
(Hugging Face ``generate`` under one seeded torch stream) is what the published worlds were
built with; moving world building onto the engine's sampler draws other random numbers, so
every cached world, its preference pairs and every figure computed on them would change. It
runs once per world build, never in training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlkit.pretrain.common import _encode, join_prompt_response, seeded
from rlkit.pretrain.reward_model import _scores

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
