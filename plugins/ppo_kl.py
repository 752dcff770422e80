"""PPO-KL (adaptive KL penalty): PPO-clip with the clip replaced by a penalty on the step size.

    L_KLPEN = E_t[ρ_t·A_t − β·KL(π_old(·|s_t) ‖ πθ(·|s_t))]       (Schulman et al. 2017, eq. 8)
    loss    = −L_KLPEN + c_v·L_V − c_e·H[πθ]          (L_V, GAE, KL to the reference: as PPO-clip)

After each update, with d = Ê_t[KL(π_old ‖ πθ)] measured on the batch with the updated policy:
    d < d_targ / 1.5  ⇒  β ← β / 2;        d > 1.5·d_targ  ⇒  β ← 2·β

KL(π_old ‖ πθ) is estimated per token on the sampled tokens (drawn from π_old) with k3,
ρ − 1 − log ρ: unbiased in value *and* gradient here, since the sampling policy is π_old, which
does not depend on θ. This trust region is relative to π_old; the KL to the reference stays
where PPO-clip puts it (``kl_placement``) with weight ``kl_coef``.

With Adam the step size follows the learning rate, not the loss scale: if the lr alone moves
the policy by more than d_targ per update, β doubles without bound (watch ``ppo_kl/beta``);
lower the lr or raise d_targ. The gradient-norm clip inherited from PPO-clip keeps Adam's
moment estimates sane meanwhile (without it a huge β froze the policy in our runs).

Optionally (``adaptive_kl_coef``) the reference-KL weight follows the proportional controller of
Ziegler et al. 2019, §2.2, on the sequence KL to π_ref (Σ_t KL_t, batch mean):
    e = clip(KL_ref / target − 1, −0.2, 0.2);   kl_coef ← kl_coef·(1 + e·n / horizon)
with n the sequences in the batch (lm-human-preferences' defaults: target 6, horizon 10000).

Schulman et al. 2017, "Proximal Policy Optimization Algorithms" (arXiv 1707.06347), §4;
Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences" (arXiv 1909.08593).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

import rlkit
from rlkit.algorithm import Algorithm, Experience, PolicyOutput, doc
from rlkit.ops import kl_penalty, masked_mean
from rlkit_plugins.ppo_clip import PPOClip, PPOClipConfig, ppo_clip_loss

if TYPE_CHECKING:
    from rlkit.api import RunContext


def ppo_kl_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                beta: float) -> tuple[Tensor, dict[str, Tensor]]:
    """−E_t[ρ_t·A_t] + β·E_t[KL_t(π_old ‖ πθ)], KL_t = ρ_t − 1 − log ρ_t (k3 from π_old's
    samples; Schulman et al. 2017, eq. 8)."""
    surrogate, _ = ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip_eps=None)
    kl_old = masked_mean(kl_penalty(old_logprobs, logprobs, "k3"), mask)
    return surrogate + beta * kl_old, {"ppo_kl/kl_old": kl_old, "ppo_kl/surrogate": surrogate}


def adapt_beta(beta: float, d: float, d_targ: float) -> float:
    """Schulman et al. 2017, §4: halve β when d < d_targ/1.5, double it when d > 1.5·d_targ."""
    if d < d_targ / 1.5:
        return beta / 2
    if d > d_targ * 1.5:
        return beta * 2
    return beta


def ziegler_kl_coef(kl_coef: float, kl_ref: float, target: float, n: int, horizon: int) -> float:
    """Ziegler et al. 2019, §2.2: β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon)."""
    error = min(max(kl_ref / target - 1, -0.2), 0.2)
    return kl_coef * (1 + error * n / horizon)


@dataclass
class PPOKLConfig(PPOClipConfig):
    clip_eps: float | None = doc(None, "No ratio clip: the adaptive penalty is the trust region.")
    beta: float = doc(1.0, "Initial β of β·KL(π_old‖πθ) (Schulman et al. 2017: 'not important').",
                      gt=0)
    kl_target: float = doc(0.01, "d_targ, the per-token KL(π_old‖πθ) aimed for per update.",
                           gt=0)
    adaptive_beta: bool = doc(True, "Halve/double β around d_targ after each update.")
    adaptive_kl_coef: bool = doc(False, "Adapt kl_coef (reference KL) by Ziegler's controller.")
    kl_ref_target: float = doc(6.0, "Ziegler's target for the sequence KL to π_ref (nats).",
                               gt=0)
    kl_horizon: int = doc(10000, "Ziegler's horizon (samples): K_β = n / horizon.", ge=1)


class PPOKL(PPOClip):
    name = "ppo_kl"
    Config = PPOKLConfig
    config: PPOKLConfig

    def __init__(self, config: PPOKLConfig, total_steps: int = 1) -> None:
        super().__init__(config, total_steps)
        self.beta, self.current_kl_coef = config.beta, config.kl_coef
        self.ctx: RunContext | None = None

    @property
    def kl_coef(self) -> float:
        return self.current_kl_coef

    def setup(self, ctx: RunContext) -> None:
        self.ctx = ctx  # to measure KL(π_old‖πθ) with the updated policy

    def policy_loss(self, batch: Experience, out: PolicyOutput,
                    advantages: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        loss, metrics = ppo_kl_loss(out.logprobs, batch.logprobs, advantages,
                                    batch.response_mask, self.beta)
        if self.config.clip_eps is not None:  # both: clipped surrogate plus the penalty
            loss = ppo_clip_loss(out.logprobs, batch.logprobs, advantages, batch.response_mask,
                                 self.config.clip_eps)[0] + self.beta * metrics["ppo_kl/kl_old"]
        return loss, metrics

    @torch.no_grad()
    def kl_after_update(self, batch: Experience, stats: dict[str, float]) -> float:
        """d = Ê_t[KL(π_old‖πθ)] with the updated policy (the mean during the update if no run)."""
        if self.ctx is None:
            return float(stats.get("ppo_kl/kl_old", 0.0))
        logprobs = self.ctx.policy_logprobs(batch)  # at the sampling temperature, masked
        return float(masked_mean(kl_penalty(batch.logprobs, logprobs, "k3"),
                                 batch.response_mask))

    def after_update(self, batch: Experience, stats: dict[str, float]) -> dict[str, float]:
        c, d = self.config, self.kl_after_update(batch, stats)
        if c.adaptive_beta:
            self.beta = adapt_beta(self.beta, d, c.kl_target)
        if c.adaptive_kl_coef:
            kl_ref = float(batch.kl.sum(1).mean())
            self.current_kl_coef = ziegler_kl_coef(self.current_kl_coef, kl_ref,
                                                   c.kl_ref_target, len(batch), c.kl_horizon)
        return {"ppo_kl/beta": self.beta, "ppo_kl/kl_after_update": d}

    def state_dict(self) -> dict[str, float]:
        return {"beta": self.beta, "kl_coef": self.current_kl_coef}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.beta, self.current_kl_coef = state["beta"], state["kl_coef"]


@rlkit.hookimpl
def rlkit_register_algorithms(register: Callable[[type[Algorithm[Any]]], None]) -> None:
    register(PPOKL)
