"""PPO-clip: the clipped surrogate minus a β-weighted KL penalty to the reference, with GAE
advantages, a clipped value loss, and several epochs over shuffled minibatches.

    ρ_t    = πθ(a_t|s_t) / π_old(a_t|s_t)
    L_clip = E_t[min(ρ_t·A_t, clip(ρ_t, 1−ε, 1+ε)·A_t)]
    J(θ)   = L_clip − β·KL(πθ ‖ π_ref)                               (the composite objective)
    L_V    = ½·E_t[max((V_t − R̂_t)², (V_old,t + clip(V_t − V_old,t, ±ε_v) − R̂_t)²)]
    loss   = −L_clip + c_v·L_V − c_e·H[πθ]  (+ β·E_t[KL_t] when kl_placement = "loss")

Where the KL goes (``kl_placement``); the two are not equivalent:
  ``reward``: shaped into the per-token reward before GAE, r_t = −β·KL_t + [t = T]·R(x, y)
      (Ziegler et al. 2019; Stiennon et al. 2020), KL_t the engine's per-token estimate
      (``kl.estimator``, k1 by default). The loss has no KL term.
  ``loss``: r_t = [t = T]·R(x, y) and β·E_t[KL_t] is added to the loss, KL_t estimated from the
      fresh log-probs with ``kl_loss_estimator`` (k3 by default: unbiased and ≥ 0 as a value,
      though as a loss its gradient is biased off-policy; GRPO-style).

Granularity: everything is token-level. A_t, ρ_t and V_t are per response token; the losses are
token means over the minibatch (``loss_aggregation = "token_mean"``); the sequence reward R
enters at the last response token (EOS or the length limit).

Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (arXiv 1707.06347), eq. 7 and 9;
GAE: Schulman et al. 2016 (arXiv 1506.02438); value clipping and advantage whitening as in
OpenAI baselines and Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO", whose
defaults (β 0.05, γ 1, λ 0.95, 4 epochs, ε 0.2, ε_v 0.2, c_v 0.1) are taken here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor

import rlkit
from rlkit import metrics as M
from rlkit.algorithm import Algorithm, AlgorithmSpec, CriticConfig, Experience, PolicyOutput, doc
from rlkit.ops import (
    KLEstimator,
    clip_fraction,
    clipped_surrogate,
    gae,
    kl_penalty,
    masked_mean,
    masked_whiten,
    tokens_reward,
)


def ppo_clip_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                  clip_eps: float | None) -> tuple[Tensor, dict[str, Tensor]]:
    """−E_t[min(ρ_t·A_t, clip(ρ_t, 1−ε, 1+ε)·A_t)], a token mean over ``mask`` (Schulman et al.
    2017, eq. 7; ``rlkit.ops.clipped_surrogate``). ``clip_eps=None`` gives the plain surrogate
    −E_t[ρ_t·A_t] (PPO-KL). With a clip, the share of tokens where the clipped term binds
    (``rlkit.ops.clip_fraction``, the engine's definition) comes back for inspection; a run logs
    the engine's own measurement from the declared ``clip_range``, not this one."""
    ratio = torch.exp(logprobs - old_logprobs)
    loss = masked_mean(clipped_surrogate(ratio, advantages, clip_eps), mask)
    if clip_eps is None:
        return loss, {}
    return loss, {M.POLICY_CLIPFRAC: clip_fraction(ratio, advantages, mask, clip_eps)}


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor,
                       clip: float | None) -> tuple[Tensor, dict[str, Tensor]]:
    """½·E_t[max((V_t − R̂_t)², (V_old + clip(V_t − V_old, ±ε_v) − R̂_t)²)] (OpenAI baselines
    ppo2; Huang et al. 2024); ``clip=None`` gives ½·E_t[(V_t − R̂_t)²]."""
    unclipped = (values - returns) ** 2
    if clip is None:
        return 0.5 * masked_mean(unclipped, mask), {}
    clipped = (old_values + (values - old_values).clamp(-clip, clip) - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, {M.VALUE_CLIPFRAC: masked_mean((clipped > unclipped).float(), mask)}


def kl_loss(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor,
            estimator: KLEstimator) -> Tensor:
    """E_t[KL_t(πθ ‖ π_ref)], the per-token estimate (k1/k2/k3, ``rlkit.ops.kl_penalty``)."""
    return masked_mean(kl_penalty(logprobs, ref_logprobs, estimator), mask)


@dataclass
class PPOClipConfig(CriticConfig):
    kl_coef: float = doc(0.05, "β of the KL-to-reference penalty (Huang et al. 2024: 0.05).")
    kl_placement: Literal["reward", "loss"] = doc(
        "reward", "reward: −β·KL_t shaped into r_t before GAE; loss: β·E_t[KL_t] in the loss.")
    kl_loss_estimator: KLEstimator = doc(
        "k3", "Estimator of the loss-side KL term (only when kl_placement = loss).")
    clip_eps: float | None = doc(0.2, "ε of the ratio clip (Schulman et al. 2017: 0.2).",
                                  gt=0)
    value_clip: float | None = doc(0.2, "ε_v: clip V within V_old ± ε_v; None: plain MSE.",
                                    gt=0)
    vf_coef: float = doc(0.1, "c_v: value-loss weight (Huang et al. 2024: 0.1).", ge=0)
    ent_coef: float = doc(0.0, "c_e: entropy-bonus weight (0 in RLHF PPO).", ge=0)
    gamma: float = doc(1.0, "γ: discount over response tokens.", ge=0, le=1)
    lam: float = doc(0.95, "λ of GAE.", ge=0, le=1)
    whiten_advantages: Literal["none", "batch", "minibatch"] = doc(
        "batch", "Whiten A_t over the whole batch (TRL, N+), per (micro)batch, or not at all.")
    epochs: int = doc(4, "PPO epochs over each batch (Huang et al. 2024: 4).")
    num_minibatches: int = doc(4, "Shuffled minibatches per epoch (CleanRL/baselines Atari: 4).")
    max_grad_norm: float | None = doc(
        1.0, "Global grad-norm clip (not in the paper; baselines 0.5, TRL and N+ 1.0).")


class PPOClip(Algorithm[PPOClipConfig]):
    name = "ppo_clip"
    Config = PPOClipConfig
    needs_critic = True

    def __init__(self, config: PPOClipConfig, total_steps: int = 1) -> None:
        super().__init__(config, total_steps)

    @classmethod
    def spec(cls, config: PPOClipConfig) -> AlgorithmSpec:
        """The ratio clip, ε on both sides, so the engine measures ``policy/clipfrac`` (none
        without a clip: PPO-KL's default)."""
        eps = config.clip_eps
        return replace(super().spec(config), clip_range=None if eps is None else (eps, eps))

    def sequence_reward(self, batch: Experience) -> Tensor:
        """R(x, y) as it enters the per-token reward (PPO-max normalizes it here)."""
        return batch.scores

    def prepare(self, batch: Experience) -> dict[str, float]:
        c, mask = self.config, batch.response_mask
        kl = batch.kl if c.kl_placement == "reward" else torch.zeros_like(batch.kl)
        rewards = tokens_reward(self.sequence_reward(batch), kl, self.kl_coef, mask)
        advantages, batch.returns = gae(rewards, batch.require("values"), mask, c.gamma, c.lam)
        if c.whiten_advantages == "batch":
            advantages = masked_whiten(advantages, mask)
        batch.advantages = advantages
        return {f"{self.name}/advantage_mean": float(masked_mean(advantages, mask)),
                f"{self.name}/return_mean": float(masked_mean(batch.returns, mask))}

    def policy_loss(self, batch: Experience, out: PolicyOutput,
                    advantages: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The policy term (PPO-KL swaps in its penalty here)."""
        return ppo_clip_loss(out.logprobs, batch.logprobs, advantages, batch.response_mask,
                             self.config.clip_eps)

    def prepare_minibatch(self, batch: Experience) -> None:
        """``whiten_advantages: minibatch``: over the whole minibatch, whatever micro-batches
        (``grad_accum_steps``) or data-parallel ranks it is then split into."""
        if self.config.whiten_advantages == "minibatch":
            batch.extras["minibatch_advantages"] = masked_whiten(
                batch.require("advantages"), batch.response_mask)

    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Tensor]]:
        c, mask = self.config, batch.response_mask
        advantages = batch.require("advantages")
        if c.whiten_advantages == "minibatch":
            advantages = batch.require("minibatch_advantages")
        pg, pg_metrics = self.policy_loss(batch, out, advantages)
        pg_metrics.pop(M.POLICY_CLIPFRAC, None)  # the engine measures it (spec().clip_range)
        assert out.values is not None, f"{self.name} declares needs_critic: the engine passes values"
        vf, vf_metrics = clipped_value_loss(out.values, batch.require("values"),
                                            batch.require("returns"), mask, c.value_clip)
        entropy = masked_mean(out.entropy, mask)
        loss = pg + c.vf_coef * vf - c.ent_coef * entropy
        metrics = {M.LOSS_POLICY: pg, M.LOSS_VALUE: vf, **pg_metrics, **vf_metrics,
                   f"{self.name}/entropy": entropy}
        if c.kl_placement == "loss":
            kl = kl_loss(out.logprobs, batch.require("ref_logprobs"), mask, c.kl_loss_estimator)
            loss = loss + self.kl_coef * kl
            metrics[f"{self.name}/kl_loss"] = kl
        return loss, {k: v.detach() for k, v in metrics.items()}


@rlkit.hookimpl
def rlkit_register_algorithms(register: Callable[[type[Algorithm[Any]]], None]) -> None:
    register(PPOClip)
