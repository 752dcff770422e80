"""Shared math for every algorithm: masking, whitening, GAE, KL estimators, log-probs.

Plugins import these instead of rewriting them, so two algorithms never differ by a subtly
different masked mean. Shapes: N sequences, R response positions; ``mask`` is 1 on response
tokens (up to and including the first EOS) and 0 after.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

KLEstimator = Literal["k1", "k2", "k3"]


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (0 when the mask is empty)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x − mean)/std over masked positions; ``shift_mean=False`` keeps the mean (reward scaling)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, estimator: KLEstimator) -> Tensor:
    """Per-token estimate of KL(π‖π_ref) from samples of π (Schulman, "Approximating KL").

    With ℓ = log π(a) − log π_ref(a):  k1 = ℓ (unbiased, can be negative);
    k2 = ℓ²/2 (biased, ≥ 0);  k3 = exp(−ℓ) − 1 + ℓ (unbiased, ≥ 0, low variance).
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; valid: k1, k2, k3")


def logprobs_from_logits(logits: Tensor, tokens: Tensor, temperature: float = 1.0) -> Tensor:
    """log softmax(logits / T)[token]: the log-prob under the *sampling* distribution."""
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Exact per-position entropy H(softmax(logits / T)) in nats."""
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def tokens_reward(scores: Tensor, kl: Tensor, kl_coef: float, mask: Tensor) -> Tensor:
    """Per-token reward r_t = −β·KL_t + [t = last response token]·R(x, y) (Ziegler et al. 2019)."""
    rewards = -kl_coef * kl * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    return rewards.scatter_add(1, last.unsqueeze(1), scores.unsqueeze(1).to(rewards.dtype))


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016).

    δ_t = r_t + γ·V_{t+1} − V_t,  A_t = Σ_l (γλ)^l δ_{t+l},  R̂_t = A_t + V_t;
    V is 0 past the last response token (the episode ends at EOS or at the length limit).
    """
    values = values * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last * mask[:, t + 1] if t + 1 < rewards.shape[1] else delta
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    """Monte-Carlo returns G_t = Σ_{l≥0} γ^l r_{t+l} over the response."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return returns * mask


def leave_one_out_baseline(values: Tensor, group_ids: Tensor) -> Tensor:
    """b_i = mean of the other members of i's group (RLOO; Kool et al. 2019, Ahmadian 2024)."""
    groups, inverse = torch.unique(group_ids, return_inverse=True)
    sums = torch.zeros(len(groups), dtype=values.dtype).index_add_(0, inverse, values)
    counts = torch.zeros(len(groups), dtype=values.dtype).index_add_(
        0, inverse, torch.ones_like(values)
    )
    others = (counts[inverse] - 1).clamp(min=1)
    return (sums[inverse] - values) / others


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """1 − Var(R̂ − V)/Var(R̂): 1 is a perfect critic, 0 no better than a constant, <0 worse."""
    var_returns = masked_var(returns, mask)
    if var_returns <= 0:
        return float("nan")
    return float(1 - masked_var(returns - values, mask) / var_returns)


class RunningMoments:
    """Running mean and std of a stream, merged batch by batch (Chan et al. parallel update)."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, x: Tensor) -> tuple[float, float]:
        """Fold in a batch; return the batch's own (mean, std)."""
        x = x.detach().double().flatten()
        n = x.numel()
        if n == 0:
            return self.mean, math.sqrt(self.var)
        b_mean = float(x.mean())
        b_var = float(x.var(unbiased=False))
        total = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.var = m2 / total
        self.count = total
        return b_mean, math.sqrt(b_var)

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": float(self.count)}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], int(state["count"])
