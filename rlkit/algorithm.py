"""The algorithm contract: what a plugin declares and what the engine hands it.

The engine owns everything that is not the algorithm (sampling, log-probs at the sampling
temperature, reference log-probs, per-token KL, values, masks, the optimizer step, gradient
clipping, canonical metrics). An algorithm turns an :class:`Experience` into advantages
(:meth:`Algorithm.prepare`) and a minibatch plus the policy's fresh outputs into a loss
(:meth:`Algorithm.loss`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import torch
from torch import Tensor

if TYPE_CHECKING:
    from rlkit.api import RunContext


def doc(default: Any, text: str, *, ge: float | None = None, gt: float | None = None,
        le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field with a default, its documentation (read by ``rlkit plugins``, the
    conformance kit and error messages) and its valid range: ``ge``/``gt``/``le``/``lt``
    bounds, checked when a config is loaded with the same file/line/key error as a wrong type
    (``None`` always passes, for optional settings)."""
    metadata: dict[str, Any] = {"doc": text}
    metadata.update({k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt))
                     if v is not None})
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


_BOUNDS = {"ge": ("≥", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b),
           "le": ("≤", lambda v, b: v <= b), "lt": ("<", lambda v, b: v < b)}


def bounds_text(metadata: Mapping[str, Any]) -> str:
    """The declared range of a field, e.g. ``> 0 and ≤ 1`` ('' when none)."""
    return " and ".join(f"{_BOUNDS[k][0]} {metadata[k]}" for k in _BOUNDS if k in metadata)


def field_specs(config_cls: type) -> dict[str, dict[str, Any]]:
    """Each field's metadata (``doc`` and bounds) with bounds inherited: a subclass that
    redefines a field (a new default and doc) without bounds keeps its base class's range;
    one that declares any bound replaces them."""
    out: dict[str, dict[str, Any]] = {}
    for klass in reversed(config_cls.__mro__):
        for name, f in getattr(klass, "__dataclass_fields__", {}).items():
            metadata = dict(f.metadata)
            inherited = out.get(name, {})
            if not any(k in metadata for k in _BOUNDS):
                metadata.update({k: v for k, v in inherited.items() if k in _BOUNDS})
            out[name] = metadata
    return out


def check_bounds(value: Any, metadata: Mapping[str, Any]) -> str | None:
    """Why ``value`` is outside the field's declared range (or not finite), else None."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    for key, (_, ok) in _BOUNDS.items():
        if key in metadata and not ok(value, metadata[key]):
            return f"must be {bounds_text(metadata)}"
    return None


@dataclass
class AlgorithmConfig:
    """Settings every algorithm has; subclasses add theirs and override defaults."""

    lr: float = doc(1e-5, "AdamW learning rate of the policy.", gt=0)
    critic_lr: float | None = doc(None, "Learning rate of the critic; None means `lr`.", gt=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = doc(
        "constant", "Decay after warm-up: constant, linear to 0, or cosine to 0."
    )
    warmup_steps: int = doc(0, "Optimizer steps of linear learning-rate warm-up.", ge=0)
    weight_decay: float = doc(0.0, "AdamW weight decay.", ge=0)
    adam_eps: float = doc(1e-8, "AdamW epsilon (pinned: it changes early updates).", gt=0)
    max_grad_norm: float | None = doc(1.0, "Global gradient-norm clip; None disables it.", gt=0)
    epochs: int = doc(1, "Passes over each batch of experience.", ge=1)
    num_minibatches: int = doc(1, "Optimizer steps per epoch (the batch is split this many ways).",
                               ge=1)
    grad_accum_steps: int = doc(1, "Micro-batches accumulated into each minibatch's step.", ge=1)
    samples_per_prompt: int = doc(1, "Responses sampled per prompt (k); groups share a prompt.",
                                  ge=1)
    kl_coef: float = doc(0.05, "β: weight of the KL-to-reference penalty.", ge=0)


@dataclass
class Experience:
    """One batch of sequences as every algorithm sees it.

    ``input_ids``/``attention_mask`` hold [left-padded prompt | response], shape [N, P+R];
    per-token tensors cover the R response positions. Log-probs are at the sampling
    temperature; ``kl`` is the per-token KL to the reference under the configured estimator
    (zeros when the algorithm declares ``needs_reference = False``, and ``ref_logprobs`` is
    then ``None``). ``scores`` is the weighted sum of the reward sources (preference data: 1
    chosen / 0 rejected; unpaired data: 1 desirable / 0 undesirable); ``token_rewards`` holds
    per-token rewards when a source gives them. Fields an algorithm fills (``advantages``,
    ``returns``) or the engine fills conditionally are read with :meth:`require`.
    """

    input_ids: Tensor  # [N, P+R]
    attention_mask: Tensor  # [N, P+R]
    prompt_len: int  # P
    response_mask: Tensor  # [N, R] float, 1 up to and including the first EOS
    logprobs: Tensor  # [N, R] log π_old(a_t|s_t)
    ref_logprobs: Tensor | None  # [N, R] log π_ref(a_t|s_t); None without a reference
    kl: Tensor  # [N, R]
    scores: Tensor  # [N] sequence reward used for training (after the missing-EOS penalty)
    group_ids: Tensor  # [N] long; samples of one prompt (or one pair) share an id
    values: Tensor | None = None  # [N, R] V(s_t) when the algorithm has a critic
    advantages: Tensor | None = None  # [N, R], set by Algorithm.prepare
    returns: Tensor | None = None  # [N, R], set by Algorithm.prepare when a critic learns
    token_rewards: Tensor | None = None  # [N, R] per-token rewards of a reward source
    extras: dict[str, Tensor] = field(default_factory=dict)  # per-sample tensors of a plugin
    # engine-internal: ``logprobs`` not scored yet (given responses whose algorithm declared
    # ``reads_old_logprobs = False``); the update's first forward, on unchanged weights, fills
    # them bit-identically
    logprobs_pending: bool = False

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def require(self, name: str) -> Tensor:
        """The tensor field ``name``, or an error saying who should have set it."""
        value = getattr(self, name) if name in _EXPERIENCE_FIELDS else self.extras.get(name)
        if not isinstance(value, Tensor):
            who = {"advantages": "the algorithm's prepare()", "returns": "the algorithm's "
                   "prepare()", "values": "the engine (declare needs_critic = True)",
                   "ref_logprobs": "the engine (declare needs_reference = True)"}.get(
                       name, "a reward source or the algorithm")
            raise RuntimeError(f"Experience.{name} is not set: it is filled by {who}.")
        return value

    def _map(self, fn: Any) -> Experience:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                v = fn(v)
            elif isinstance(v, dict):
                v = {k: fn(t) for k, t in v.items()}
            values[f.name] = v
        return Experience(**values)

    def select(self, index: Tensor) -> Experience:
        """The sub-batch of rows ``index`` (every per-sample tensor sliced alike)."""
        return self._map(lambda t: t[index])

    def to(self, device: torch.device | str) -> Experience:
        return self._map(lambda t: t.to(device))


_EXPERIENCE_FIELDS = {f.name for f in dataclasses.fields(Experience)}


@dataclass
class PolicyOutput:
    """The current policy's outputs on a minibatch (with gradients)."""

    logprobs: Tensor  # [n, R] log π_θ(a_t|s_t) at the sampling temperature
    entropy: Tensor  # [n, R] exact entropy of π_θ(·|s_t)
    values: Tensor | None = None  # [n, R] V_φ(s_t) when a critic is used


LossAggregation = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum",
                          "seq_mean_token_sum_norm"]
#: How a loss turns per-token terms into one number (verl's ``agg_loss``; Liu et al. 2025):
#: ``token_mean``: Σ_i Σ_t ℓ_it / Σ_i |y_i| (PPO, DAPO: each token weighs alike);
#: ``seq_mean_token_mean``: mean_i (Σ_t ℓ_it / |y_i|) (GRPO: each sequence weighs alike);
#: ``seq_mean_token_sum``: mean_i Σ_t ℓ_it (REINFORCE, DPO: a sequence log-prob per item);
#: ``seq_mean_token_sum_norm``: Σ_i Σ_t ℓ_it / (N·L) with a constant L (Dr. GRPO).
#: The engine weights accumulated micro-batches by it, so accumulation equals one big batch.
LOSS_AGGREGATIONS: tuple[str, ...] = typing.get_args(LossAggregation)

C = TypeVar("C", bound=AlgorithmConfig)


@dataclass(frozen=True)
class AlgorithmSpec:
    """What one configured algorithm needs from the engine, declared in one place.

    ``data_kind``: a registered data kind ("rollout", "preferences", "unpaired",
    "judged_pairs", or a plugin's) and ``data_options`` for it; ``needs_reference``: False lets
    the engine build no reference model and compute no reference log-probs (SimPO, ORPO, β = 0);
    ``needs_critic`` and where the critic starts (``critic_init``: "policy", "reward", "auto";
    a core ``critic.model`` spec overrides it with a separate model); ``loss_aggregation`` (see
    :data:`LossAggregation`); ``clip_range`` (ε_low, ε_high) of a ratio clip, from which the
    engine measures ``policy/clipfrac`` with one definition for every algorithm;
    ``reads_old_logprobs``: False when ``prepare`` never reads ``batch.logprobs`` (π_old), so
    for given (offline) responses the engine may skip the no-grad policy forward and take the
    update's first forward, bit-identical, as π_old.
    """

    data_kind: str = "rollout"
    data_options: Mapping[str, Any] = field(default_factory=dict)
    needs_reference: bool = True
    needs_critic: bool = False
    critic_init: str = "policy"
    loss_aggregation: LossAggregation = "token_mean"
    clip_range: tuple[float, float] | None = None
    reads_old_logprobs: bool = True

    def validate(self, owner: str) -> None:
        """Raise a :class:`~rlkit.errors.PluginError` naming ``owner`` on an invalid value."""
        from rlkit.errors import PluginError

        if self.loss_aggregation not in LOSS_AGGREGATIONS:
            raise PluginError(
                f"Algorithm '{owner}' declares loss_aggregation={self.loss_aggregation!r}; "
                f"valid: {', '.join(LOSS_AGGREGATIONS)}."
            )
        if self.critic_init not in ("policy", "reward", "auto"):
            raise PluginError(f"Algorithm '{owner}' declares critic_init={self.critic_init!r}; "
                              f"valid: policy, reward, auto.")
        if self.clip_range is not None and not (
                len(self.clip_range) == 2 and all(c >= 0 for c in self.clip_range)):
            raise PluginError(f"Algorithm '{owner}' declares clip_range={self.clip_range!r}; "
                              f"it must be (ε_low, ε_high), both ≥ 0.")


class Algorithm(ABC, Generic[C]):
    """Base class of algorithm plugins.

    Class attributes declare the defaults of :class:`AlgorithmSpec` (``data_kind``,
    ``needs_reference``, ``needs_critic``, ``loss_aggregation``); an algorithm whose needs
    depend on its options overrides :meth:`spec`. ``name`` is the key of ``algorithm.name``;
    ``Config`` is a dataclass subclassing :class:`AlgorithmConfig` (one documented field each),
    and ``self.config`` is typed as it (``class MyAlgo(Algorithm[MyConfig])``). Everything is
    validated when the class is registered.
    """

    name: ClassVar[str]
    Config: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    data_kind: ClassVar[str] = "rollout"
    needs_reference: ClassVar[bool] = True
    needs_critic: ClassVar[bool] = False
    loss_aggregation: ClassVar[LossAggregation] = "token_mean"
    reads_old_logprobs: ClassVar[bool] = True

    def __init__(self, config: C, total_steps: int) -> None:
        self.config: C = config
        self.total_steps = total_steps

    @classmethod
    def spec(cls, config: Any) -> AlgorithmSpec:
        """The engine-facing declaration for ``config`` (defaults: the class attributes; a
        :class:`CriticConfig` supplies ``critic_init``)."""
        return AlgorithmSpec(
            data_kind=cls.data_kind, needs_reference=cls.needs_reference,
            needs_critic=cls.needs_critic, loss_aggregation=cls.loss_aggregation,
            reads_old_logprobs=cls.reads_old_logprobs,
            critic_init=config.critic_init if isinstance(config, CriticConfig) else "policy",
        )

    @property
    def kl_coef(self) -> float:
        """The current β (logged as ``policy/kl_coef``; adaptive algorithms override)."""
        return float(self.config.kl_coef)

    def setup(self, ctx: RunContext) -> None:
        """Called once the engine's models exist, before the first step. ``ctx`` is the
        declared plugin API (:class:`rlkit.api.RunContext`): config, tokenizer, task, step and
        services such as ``ctx.policy_logprobs(batch)`` and ``ctx.lm_loss(texts)``."""

    def prepare(self, batch: Experience) -> dict[str, float]:
        """Fill ``batch.advantages`` (and ``batch.returns``) without gradients; return metrics."""
        return {}

    def prepare_minibatch(self, batch: Experience) -> None:
        """Called without gradients with each whole minibatch (on every data-parallel rank the
        same rows), before it is split into micro-batches (``grad_accum_steps``, ranks).
        Statistics the loss must take over the minibatch rather than over one micro-batch
        (advantages whitened per minibatch, a normaliser) go into ``batch.extras`` here: the
        micro-batches are selected from this batch and carry them. Default: nothing."""

    @abstractmethod
    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Any]]:
        """The scalar loss to minimise on one (micro)batch, and metrics beside it."""

    def loss_weight(self, batch: Experience) -> Tensor | None:
        """A (micro)batch's weight when micro-batch losses are accumulated into their
        minibatch's: the count :meth:`loss` divides by, for a loss that is a mean over some of
        the rows only (KTO: the labelled ones, not the mismatched anchors), so that the
        accumulated loss is the whole minibatch's. ``None`` (default): the weight of the
        declared ``loss_aggregation`` (response tokens for ``token_mean``, else sequences)."""
        return None

    def after_update(self, batch: Experience, stats: dict[str, float]) -> dict[str, float]:
        """Evolve state between updates (adaptive β, running moments); return metrics."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (floats, tensors, RNG states): resume must equal no stop."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@dataclass
class CriticConfig(AlgorithmConfig):
    """Settings of algorithms that learn a critic (A2C, the PPOs)."""

    critic_init: Literal["policy", "reward", "auto"] = doc(
        "policy", "Critic trunk from the policy (zero head), from the reward model, or auto "
        "(the reward model when it shares the policy's tokenizer). A core `critic.model` spec "
        "replaces both with a separate model.")


def validate_algorithm_class(cls: Any, plugin: str) -> None:
    """The checks run when a plugin registers an algorithm class (errors name the plugin)."""
    from rlkit.errors import PluginError

    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise PluginError(f"Plugin '{plugin}' registered {cls!r} as an algorithm; it must be a "
                          f"subclass of rlkit.Algorithm.")
    if not (isinstance(cls.Config, type) and dataclasses.is_dataclass(cls.Config)
            and issubclass(cls.Config, AlgorithmConfig)):
        raise PluginError(f"Algorithm '{cls.name}' of plugin '{plugin}': Config must be a "
                          f"@dataclass subclassing rlkit.AlgorithmConfig, not {cls.Config!r}.")
    try:
        default = cls.Config()
    except TypeError as exc:
        raise PluginError(f"Algorithm '{cls.name}' of plugin '{plugin}': every Config field "
                          f"needs a default ({exc}).") from None
    for name, metadata in field_specs(cls.Config).items():
        problem = check_bounds(getattr(default, name, None), metadata)
        if problem:
            raise PluginError(f"Algorithm '{cls.name}' of plugin '{plugin}': the default "
                              f"{name}={getattr(default, name)!r} {problem}.")
    cls.spec(default).validate(f"{cls.name}' of plugin '{plugin}")


def config_docs(config_cls: type) -> dict[str, tuple[Any, str]]:
    """``{field: (default, doc)}`` of an algorithm's Config dataclass."""
    out = {}
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        out[f.name] = (default, f.metadata.get("doc", ""))
    return out
