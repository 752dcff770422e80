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
    the score is the logit ``reward.label`` (0 for a one-output model), as the head defines."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int, device: torch.device,
                 label: int | None = None) -> None:
        num_labels = int(getattr(model.config, "num_labels", 1))
        if label is None and num_labels > 1:
            labels = getattr(model.config, "id2label", {})
            raise RlkitError(
                f"The reward model '{model.name_or_path}' has {num_labels} labels ({labels}); "
                f"set reward.label to the index whose logit is the reward (e.g. the positive "
                f"class)."
            )
        if label is not None and not -num_labels <= label < num_labels:
            raise RlkitError(f"reward.label={label} but the reward model has {num_labels} labels.")
        self.label = label or 0
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
            logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            scores.append(logits[:, self.label].float().cpu())
        return torch.cat(scores)
