"""The algorithm contract: what a plugin declares and what the engine hands it.

The engine owns everything that is not the algorithm (sampling, log-probs at the sampling
temperature, reference log-probs, per-token KL, values, masks, the optimizer step, gradient
clipping, canonical metrics). An algorithm turns an :class:`Experience` into advantages
(:meth:`Algorithm.prepare`) and a minibatch plus the policy's fresh outputs into a loss
(:meth:`Algorithm.loss`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor


def doc(default: Any, text: str) -> Any:
    """A dataclass field with a default and its documentation (read by ``rlkit plugins``,
    the conformance kit and error messages)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class AlgorithmConfig:
    """Settings every algorithm has; subclasses add theirs and override defaults."""

    lr: float = doc(1e-5, "AdamW learning rate of the policy.")
    critic_lr: float | None = doc(None, "Learning rate of the critic; None means `lr`.")
    lr_schedule: Literal["constant", "linear", "cosine"] = doc(
        "constant", "Decay after warm-up: constant, linear to 0, or cosine to 0."
    )
    warmup_steps: int = doc(0, "Optimizer steps of linear learning-rate warm-up.")
    weight_decay: float = doc(0.0, "AdamW weight decay.")
    adam_eps: float = doc(1e-8, "AdamW epsilon (pinned: it changes early updates).")
    max_grad_norm: float | None = doc(1.0, "Global gradient-norm clip; None disables it.")
    epochs: int = doc(1, "Passes over each batch of experience.")
    num_minibatches: int = doc(1, "Optimizer steps per epoch (the batch is split this many ways).")
    grad_accum_steps: int = doc(1, "Micro-batches accumulated into each minibatch's step.")
    samples_per_prompt: int = doc(1, "Responses sampled per prompt (k); groups share a prompt.")
    kl_coef: float = doc(0.05, "β: weight of the KL-to-reference penalty.")


@dataclass
class Experience:
    """One batch of sequences as every algorithm sees it.

    ``input_ids``/``attention_mask`` hold [left-padded prompt | response], shape [N, P+R];
    per-token tensors cover the R response positions. Log-probs are at the sampling
    temperature; ``kl`` is the per-token KL to the reference under the configured estimator.
    """

    input_ids: Tensor  # [N, P+R]
    attention_mask: Tensor  # [N, P+R]
    prompt_len: int  # P
    response_mask: Tensor  # [N, R] float, 1 up to and including the first EOS
    logprobs: Tensor  # [N, R] log π_old(a_t|s_t)
    ref_logprobs: Tensor  # [N, R] log π_ref(a_t|s_t)
    kl: Tensor  # [N, R]
    scores: Tensor  # [N] sequence reward used for training (after the missing-EOS penalty)
    group_ids: Tensor  # [N] long; samples of one prompt share an id
    values: Tensor | None = None  # [N, R] V(s_t) when the algorithm has a critic
    advantages: Tensor | None = None  # [N, R], set by Algorithm.prepare
    returns: Tensor | None = None  # [N, R], set by Algorithm.prepare when a critic learns
    extras: dict[str, Tensor] = field(default_factory=dict)  # per-sample tensors of a plugin

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index: Tensor) -> Experience:
        """The sub-batch of rows ``index`` (every per-sample tensor sliced alike)."""
        values = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                v = v[index]
            elif isinstance(v, dict):
                v = {k: t[index] for k, t in v.items()}
            values[f.name] = v
        return Experience(**values)

    def to(self, device: torch.device | str) -> Experience:
        values = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                v = v.to(device)
            elif isinstance(v, dict):
                v = {k: t.to(device) for k, t in v.items()}
            values[f.name] = v
        return Experience(**values)


@dataclass
class PolicyOutput:
    """The current policy's outputs on a minibatch (with gradients)."""

    logprobs: Tensor  # [n, R] log π_θ(a_t|s_t) at the sampling temperature
    entropy: Tensor  # [n, R] exact entropy of π_θ(·|s_t)
    values: Tensor | None = None  # [n, R] V_φ(s_t) when a critic is used


class Algorithm(ABC):
    """Base class of algorithm plugins.

    Class attributes: ``name`` (the key of ``algorithm.name``), ``Config`` (a dataclass
    subclassing :class:`AlgorithmConfig`, one documented field each), ``needs_critic``,
    and ``data`` — "rollout" (sample from the policy every step) or "preferences" (batches of
    chosen/rejected pairs from a preference file; each pair is a group of two sequences whose
    ``scores`` are 1 for chosen and 0 for rejected).
    """

    name: ClassVar[str]
    Config: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    needs_critic: ClassVar[bool] = False
    data: ClassVar[Literal["rollout", "preferences"]] = "rollout"

    def __init__(self, config: AlgorithmConfig, total_steps: int = 1) -> None:
        self.config = config
        self.total_steps = total_steps

    @property
    def kl_coef(self) -> float:
        """The current β (logged as ``policy/kl_coef``; adaptive algorithms override)."""
        return float(self.config.kl_coef)

    @property
    def critic_init(self) -> str:
        """Where the critic starts: "policy" or "reward"."""
        return str(getattr(self.config, "critic_init", "policy"))

    def data_source(self) -> str:
        """"rollout" or "preferences" for this configured instance (defaults to ``data``)."""
        return self.data

    def setup(self, run: Any) -> None:
        """Called once the engine's models exist. ``run`` (an :class:`rlkit.engine.Run`) gives
        access to ``run.policy``, ``run.tokenizer``, ``run.task`` and ``run.lm_loss(texts)``
        for algorithms that need more than experience (e.g. a pretraining loss)."""

    def prepare(self, batch: Experience) -> dict[str, float]:
        """Fill ``batch.advantages`` (and ``batch.returns``) without gradients; return metrics."""
        return {}

    @abstractmethod
    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Any]]:
        """The scalar loss to minimise on one (micro)batch, and metrics beside it."""

    def after_update(self, batch: Experience, stats: dict[str, float]) -> dict[str, float]:
        """Evolve state between updates (adaptive β, running moments); return metrics."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (floats and tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def config_docs(config_cls: type) -> dict[str, tuple[Any, str]]:
    """``{field: (default, doc)}`` of an algorithm's Config dataclass."""
    out = {}
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out[f.name] = (default, f.metadata.get("doc", ""))
    return out
