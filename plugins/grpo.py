"""GRPO: group-relative policy optimization, the clipped surrogate with a group baseline and a
KL-to-reference loss term; no critic. Dr. GRPO, DAPO and GSPO are options of the same loss.

For each prompt x the engine samples G responses y_1..y_G (``samples_per_prompt``) with scores
R_i. Every token of response i gets the same advantage

    Â_i   = (R_i − mean_j R_j) / (σ + ε)          σ: std of the group, of the batch, or 1
    ρ_i,t = πθ(a_i,t|s_i,t) / π_old(a_i,t|s_i,t)                       (importance = token)
    ρ_i   = exp((1/|y_i|)·Σ_t log(πθ(a_i,t|s_i,t) / π_old(a_i,t|s_i,t)))  (importance = sequence)
    ℓ_i,t = −min(ρ·Â_i, clip(ρ, 1 − ε_low, 1 + ε_high)·Â_i) + β·KL_k3,t(πθ ‖ π_ref)
    loss  = agg(ℓ), the aggregation set by ``loss_type``

with KL_k3 = π_ref/πθ − log(π_ref/πθ) − 1 per token, from the fresh log-probs (Shao et al.'s
unbiased estimator; as a loss its gradient is biased off-policy). β = ``kl_coef``; β = 0 drops
the term and the reference model with it (``spec().needs_reference`` is then False).

``loss_type`` picks the paper, each with its own aggregation (``rlkit.ops.agg_loss``):
  ``grpo``    (1/G)·Σ_i (1/|y_i|)·Σ_t ℓ_i,t, σ the group std (Shao et al. 2024, eq. 3);
              ``seq_mean_token_mean``: a token of a short response weighs more than one of a
              long response, the length bias Liu et al. 2025 point out.
  ``dr_grpo`` Σ_i Σ_t ℓ_i,t / (G·L) with L the generation limit, and no σ (Liu et al. 2025,
              "Understanding R1-Zero-Like Training", Dr. GRPO): every token weighs alike
              whatever its response's length, and easy or hard prompts are not up-weighted.
              ``seq_mean_token_sum_norm``.
  ``dapo``    Σ_i Σ_t ℓ_i,t / Σ_i |y_i| over the whole batch (Yu et al. 2025, DAPO's token-
              level loss), with its clip-higher ε_high = 0.28. ``token_mean``.
``scale_rewards`` (group | batch | none) overrides the loss type's σ; ``batch`` keeps the group
mean and divides by the batch std (Liu et al. 2025, "Tricks or Traps?").

``importance_sampling = "sequence"`` is GSPO (Zheng et al. 2025, "Group Sequence Policy
Optimization"): one length-normalised ratio per response, clipped as a whole; GSPO's paper clips
it at (1 − 3e-4, 1 + 4e-4) — set ``epsilon_low``/``epsilon_high`` to those.

μ (GRPO's ``num_iterations``, the optimizer passes over each batch) is ``epochs``; with μ = 1
and one minibatch (the paper's setting) ρ ≡ 1 and the clip never binds.

Not here: DAPO's dynamic sampling (dropping groups whose G scores tie, then sampling more) and
its overlong reward shaping; a group whose scores tie has Â = 0 and only its KL term trains
(the engine logs their share, ``rollout/zero_std_groups``).

Shao et al. 2024, "DeepSeekMath" (arXiv 2402.03300), §4.1: G 64, ε 0.2, β 0.04, μ 1 (TRL's
default G is 8, taken here); Liu et al. 2025 (arXiv 2503.20783); Yu et al. 2025 (arXiv
2503.14476); Zheng et al. 2025 (arXiv 2507.18071); TRL's GRPOTrainer for the details (σ + 1e-4,
unbiased std).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

import rlkit
from rlkit import metrics as M
from rlkit.algorithm import (
    Algorithm,
    AlgorithmConfig,
    AlgorithmSpec,
    Experience,
    LossAggregation,
    PolicyOutput,
    doc,
)
from rlkit.errors import ConfigError
from rlkit.ops import (
    RewardScale,
    agg_loss,
    clip_fraction,
    clipped_surrogate,
    group_advantages,
    kl_penalty,
    masked_mean,
    sequence_log_ratio,
)

if TYPE_CHECKING:
    from rlkit.api import RunContext

LossType = Literal["grpo", "dr_grpo", "dapo"]
AGGREGATION: dict[str, LossAggregation] = {
    "grpo": "seq_mean_token_mean", "dr_grpo": "seq_mean_token_sum_norm", "dapo": "token_mean"}
SCALE: dict[str, RewardScale] = {"grpo": "group", "dr_grpo": "none", "dapo": "group"}
EPSILON_HIGH = {"dapo": 0.28}  # DAPO's clip-higher; the others clip symmetrically


def grpo_loss(logprobs: Tensor, old_logprobs: Tensor, ref_logprobs: Tensor | None,
              advantages: Tensor, mask: Tensor, eps_low: float, eps_high: float, beta: float,
              importance_sampling: str, aggregation: LossAggregation,
              constant_len: int | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """agg_t,i(−min(ρ·Â, clip(ρ, 1 − ε_low, 1 + ε_high)·Â) + β·KL_k3) over ``mask``, ρ per token
    or one length-normalised ratio per response (GSPO); ``advantages`` [N, R] (Â_i on each of
    response i's tokens). Shao et al. 2024, eq. 3; Zheng et al. 2025, eq. 7."""
    if importance_sampling == "sequence":
        log_ratio = sequence_log_ratio(logprobs, old_logprobs, mask, True).unsqueeze(1)
    elif importance_sampling == "token":
        log_ratio = logprobs - old_logprobs
    else:
        raise ValueError(f"unknown importance_sampling {importance_sampling!r}; valid: token, "
                         f"sequence")
    ratio = torch.exp(log_ratio)
    per_token = clipped_surrogate(ratio, advantages, eps_low, eps_high)
    metrics: dict[str, Tensor] = {}
    if importance_sampling == "sequence":  # the engine's policy/clipfrac counts token ratios
        metrics["grpo/seq_clipfrac"] = clip_fraction(ratio, advantages, mask, eps_low, eps_high)
    policy = agg_loss(per_token, mask, aggregation, constant_len)
    metrics[M.LOSS_POLICY] = policy
    if beta == 0:
        return policy, metrics
    if ref_logprobs is None:
        raise ValueError("grpo with β > 0 needs the reference log-probs")
    kl = kl_penalty(logprobs, ref_logprobs, "k3")
    metrics["grpo/kl"] = masked_mean(kl, mask)
    return policy + beta * agg_loss(kl, mask, aggregation, constant_len), metrics


@dataclass
class GRPOConfig(AlgorithmConfig):
    kl_coef: float = doc(0.04, "β of the k3 KL-to-reference loss term (Shao et al.: 0.04); "
                               "0 drops the term and the reference model.")
    loss_type: LossType = doc(
        "grpo", "grpo: per-response token mean (Shao et al. 2024); dr_grpo: constant divisor, "
        "no std (Liu et al. 2025); dapo: token mean over the batch, clip-higher (Yu et al. 2025).")
    scale_rewards: Literal["auto", "group", "batch", "none"] = doc(
        "auto", "σ dividing Â: group std, batch std, or none; auto: the loss type's "
        "(none for dr_grpo, group otherwise).")
    epsilon_low: float = doc(0.2, "ε_low: the ratio is clipped below at 1 − ε_low (Shao: 0.2).")
    epsilon_high: float | None = doc(
        None, "ε_high: clipped above at 1 + ε_high; None: the loss type's (dapo 0.28, "
        "else ε_low).")
    importance_sampling: Literal["token", "sequence"] = doc(
        "token", "token: a ratio per token; sequence: GSPO's length-normalised ratio per "
        "response (Zheng et al. 2025).")
    samples_per_prompt: int = doc(8, "G, responses per prompt (Shao et al.: 64; TRL: 8).")
    epochs: int = doc(1, "μ, GRPO's num_iterations: optimizer passes over each batch "
                         "(Shao et al.: 1; above 1 the ratio moves and the clip acts).")
    num_minibatches: int = doc(1, "Optimizer steps per pass (groups are never split).")

    @property
    def num_iterations(self) -> int:
        """μ in Shao et al. and TRL: the passes over each batch, i.e. ``epochs``."""
        return self.epochs

    def reward_scale(self) -> RewardScale:
        return SCALE[self.loss_type] if self.scale_rewards == "auto" else self.scale_rewards

    def clip_high(self) -> float:
        if self.epsilon_high is not None:
            return self.epsilon_high
        return EPSILON_HIGH.get(self.loss_type, self.epsilon_low)


class GRPO(Algorithm[GRPOConfig]):
    name = "grpo"
    Config = GRPOConfig
    loss_aggregation = "seq_mean_token_mean"

    def __init__(self, config: GRPOConfig, total_steps: int) -> None:
        super().__init__(config, total_steps)
        if config.samples_per_prompt < 2:
            raise ConfigError("grpo compares the responses of one prompt: set "
                              "algorithm.samples_per_prompt ≥ 2 (got "
                              f"{config.samples_per_prompt}).")
        self.max_new_tokens: int | None = None  # Dr. GRPO's constant L, the generation limit

    @classmethod
    def spec(cls, config: GRPOConfig) -> AlgorithmSpec:
        """β = 0 needs no reference; the loss type sets the aggregation; the clip its range."""
        return AlgorithmSpec(needs_reference=config.kl_coef != 0,
                             loss_aggregation=AGGREGATION[config.loss_type],
                             clip_range=(config.epsilon_low, config.clip_high()))

    def setup(self, ctx: RunContext) -> None:
        self.max_new_tokens = ctx.config.rollout.max_new_tokens

    def prepare(self, batch: Experience) -> dict[str, float]:
        scores = group_advantages(batch.scores, batch.group_ids, self.config.reward_scale())
        batch.advantages = scores.unsqueeze(1) * batch.response_mask
        return {"grpo/advantage_abs_mean": float(scores.abs().mean())}

    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        loss, metrics = grpo_loss(
            out.logprobs, batch.logprobs, batch.ref_logprobs, batch.require("advantages"),
            batch.response_mask, c.epsilon_low, c.clip_high(), self.kl_coef,
            c.importance_sampling, AGGREGATION[c.loss_type], self.max_new_tokens)
        return loss, {k: v.detach() for k, v in metrics.items()}


@rlkit.hookimpl
def rlkit_register_algorithms(register: Callable[[type[Algorithm[Any]]], None]) -> None:
    register(GRPO)
