"""Reward sources: one protocol for reward functions, classifier models and anything a plugin
brings (a remote judge, a verifier), and their weighted sum.

A source is called with a :class:`RewardInputs` — prompts, responses, the full decoded texts,
each prompt's metadata row (every extra column of the prompt file or dataset, e.g. ``answer``)
and the response lengths in tokens — and returns one float per response, optionally with
per-token rewards (:class:`RewardOutput`). ``reward: [{source: a, weight: 1.0}, {source: b,
weight: 0.2}]`` sums several; each is logged as ``rewards/<name>/mean``.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from rlkit.errors import RlkitError
from rlkit.rollout import no_cache


@dataclass
class RewardInputs:
    """What every reward source receives, aligned row by row."""

    prompts: list[str]
    responses: list[str]
    texts: list[str]  # the decoded prompt + response
    metadata: list[dict[str, Any]]  # the prompt's row: {"prompt": ..., "answer": ..., ...}
    response_lengths: list[int]  # response tokens, EOS included


@dataclass
class RewardOutput:
    """One score per response, and optionally per-token rewards [N, R] (zero past the end)."""

    scores: Tensor
    token_rewards: Tensor | None = None


class RewardSource(ABC):
    """Base class of reward sources a plugin registers by class.

    Built once per run as ``cls(ctx, options)`` (``ctx`` the run's
    :class:`~rlkit.api.RunContext`, ``options`` the ``options`` mapping of its entry in the
    ``reward`` section).
    """

    name: ClassVar[str] = ""

    def __init__(self, ctx: Any, options: Mapping[str, Any]) -> None:
        self.ctx, self.options = ctx, dict(options)

    @abstractmethod
    def __call__(self, inputs: RewardInputs) -> RewardOutput | Sequence[float] | Tensor:
        """Score ``inputs``: one float per response (or a :class:`RewardOutput`)."""


class FunctionReward(RewardSource):
    """A registered reward function, called TRL-style: ``fn(prompts, responses, **columns)``
    where each metadata column arrives as a list with one value per response. A function
    that takes only ``(prompts, responses)`` is called that way."""

    def __init__(self, name: str, fn: Callable[..., Sequence[float]]) -> None:
        super().__init__(None, {})
        self.name_, self.fn = name, fn
        params = inspect.signature(fn).parameters.values()
        self.takes_columns = any(p.kind is p.VAR_KEYWORD for p in params) or sum(
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params) > 2

    def __call__(self, inputs: RewardInputs) -> Sequence[float]:
        if not self.takes_columns:
            return self.fn(inputs.prompts, inputs.responses)
        keys = sorted({k for row in inputs.metadata for k in row if k != "prompt"})
        columns = {k: [row.get(k) for row in inputs.metadata] for k in keys}
        try:
            return self.fn(inputs.prompts, inputs.responses, **columns)
        except TypeError as exc:
            if "argument" not in str(exc):
                raise
            raise RlkitError(
                f"Reward function '{self.name_}' could not be called with the prompt metadata "
                f"columns {keys or '(none)'}: {exc}. Give the prompt file the columns it needs "
                f"or accept **kwargs."
            ) from None


class ModelReward(RewardSource):
    """A sequence-classification reward model scoring the full text (prompt + response);
    the score is the logit ``reward.label`` (0 for a one-output model), as the head defines."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int, device: torch.device,
                 label: int | None = None) -> None:
        super().__init__(None, {})
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

    offload = False  # train.offload_frozen: the model lives on the CPU between calls

    @torch.inference_mode()
    def __call__(self, inputs: RewardInputs) -> Tensor:
        from rlkit.models import on_device

        with on_device(self.model, self.device, self.offload):
            return self._score(inputs)

    def _score(self, inputs: RewardInputs) -> Tensor:
        scores = []
        texts = inputs.texts
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[start : start + self.batch_size], return_tensors="pt", padding=True,
                truncation=True,
            ).to(self.device)
            logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                **no_cache(self.model)).logits
            scores.append(logits[:, self.label].float().cpu())
        return torch.cat(scores)


def _as_output(name: str, value: Any, n: int, width: int) -> RewardOutput:
    """Normalise what a source returned; errors name the source and what was wrong."""
    out = value if isinstance(value, RewardOutput) else RewardOutput(scores=value)
    try:
        scores = torch.as_tensor(
            out.scores if isinstance(out.scores, Tensor) else [float(s) for s in out.scores],
            dtype=torch.float32).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise RlkitError(f"Reward source '{name}' returned {type(out.scores).__name__} values "
                         f"that are not numbers ({exc}); it must return one float per "
                         f"response.") from None
    if len(scores) != n:
        raise RlkitError(f"Reward source '{name}' returned {len(scores)} scores for {n} "
                         f"responses; it must return one float per response.")
    token = out.token_rewards
    if token is not None:
        token = torch.as_tensor(token, dtype=torch.float32)
        if tuple(token.shape) != (n, width):
            raise RlkitError(f"Reward source '{name}' returned per-token rewards of shape "
                             f"{tuple(token.shape)}; expected ({n}, {width}).")
    return RewardOutput(scores.cpu(), None if token is None else token.cpu())


@dataclass
class Scored:
    """The weighted sum and each source's own scores (for ``rewards/<name>/mean``)."""

    scores: Tensor  # [N]
    token_rewards: Tensor | None  # [N, R]
    per_source: dict[str, Tensor]


class WeightedRewards:
    """Σ_j w_j · source_j: the run's reward. One source with weight 1 is the common case."""

    def __init__(self, sources: list[tuple[str, RewardSource, float]]) -> None:
        if not sources:
            raise RlkitError("The reward section names no reward source.")
        self.sources = sources

    @property
    def model_source(self) -> ModelReward | None:
        """The classifier of a single-model reward (a critic may start from it)."""
        only = [s for _, s, _ in self.sources if isinstance(s, ModelReward)]
        return only[0] if len(self.sources) == 1 and only else None

    def __call__(self, inputs: RewardInputs, width: int) -> Scored:
        n = len(inputs.responses)
        total, token_total = torch.zeros(n), None
        per_source = {}
        for name, source, weight in self.sources:
            try:
                raw = source(inputs)
            except RlkitError:
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin's failure, reported by name
                raise RlkitError(f"Reward source '{name}' raised {type(exc).__name__}: {exc}. "
                                 f"Fix the source, then resume the run with --resume.") from exc
            out = _as_output(name, raw, n, width)
            bad = [i for i, v in enumerate(out.scores.tolist()) if not math.isfinite(v)]
            if bad:
                raise NonFiniteError(f"reward source '{name}'", f"{len(bad)} non-finite score(s), "
                                     f"first for response {bad[0]}: {inputs.responses[bad[0]]!r}")
            per_source[name] = out.scores
            total = total + weight * out.scores
            if out.token_rewards is not None:
                part = weight * out.token_rewards
                token_total = part if token_total is None else token_total + part
        return Scored(total, token_total, per_source)


class NonFiniteError(RlkitError):
    """A reward, loss or gradient norm is NaN or infinite; names where it appeared."""

    def __init__(self, where: str, detail: str, step: int | None = None) -> None:
        self.where, self.detail, self.step = where, detail, step
        super().__init__(self._message())

    def _message(self) -> str:
        at = f" at step {self.step}" if self.step is not None else ""
        return (f"Non-finite value{at} from {self.where}: {self.detail}. The run stopped before "
                f"updating the weights; its last checkpoint is intact. Fix the cause and resume "
                f"with --resume, or set train.skip_nonfinite=true to skip such batches.")

    def at_step(self, step: int) -> NonFiniteError:
        self.step = step
        self.args = (self._message(),)
        return self
