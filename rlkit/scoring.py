"""Turning (prompt, response) pairs into scalar rewards: reward functions or reward models."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from rlkit.errors import RlkitError


class FunctionReward:
    """A registered Python reward function ``fn(prompts, responses) -> list[float]``."""

    model = None
    tokenizer = None

    def __init__(self, name: str, fn: Callable[..., Sequence[float]]) -> None:
        self.name, self.fn = name, fn

    def __call__(self, prompts: list[str], responses: list[str], texts: list[str]) -> torch.Tensor:
        scores = list(self.fn(prompts, responses))
        if len(scores) != len(responses):
            raise RlkitError(
                f"Reward function '{self.name}' returned {len(scores)} scores for "
                f"{len(responses)} responses; it must return one float per response."
            )
        return torch.tensor([float(s) for s in scores], dtype=torch.float32)


class ModelReward:
    """A sequence-classification reward model scoring the full text (prompt + response);
    the score is logit 0 at the last non-pad token, as the model's own head defines."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int, device: torch.device) -> None:
        self.model = model.eval().to(device)
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size, self.device = batch_size, device

    @torch.inference_mode()
    def __call__(self, prompts: list[str], responses: list[str], texts: list[str]) -> torch.Tensor:
        scores = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[start : start + self.batch_size], return_tensors="pt", padding=True,
                truncation=True,
            ).to(self.device)
            scores.append(self.model(**enc).logits[:, 0].float().cpu())
        return torch.cat(scores)
