"""Shared math for every algorithm: masking, whitening, GAE, KL estimators, log-probs, group
baselines, importance ratios, the clipped surrogate and loss aggregation.

Plugins import these instead of rewriting them, so two algorithms never differ by a subtly
different masked mean. Shapes: N sequences, R response positions; ``mask`` is 1 on response
tokens (up to and including the first EOS) and 0 after; ``group_ids`` [N] gives each sequence's
group (the k samples of one prompt, or one preference pair).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from rlkit.algorithm import LossAggregation

KLEstimator = Literal["k1", "k2", "k3"]
RewardScale = Literal["group", "batch", "none"]


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


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8,
                  unbiased: bool = True) -> Tensor:
    """(x − mean)/std over masked positions; ``shift_mean=False`` keeps the mean (reward scaling);
    ``unbiased=False`` divides the variance by n, not n − 1 (OpenRLHF's global normalisation)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask, unbiased)
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


def log_softmax_at(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """log softmax(logits / T) over the vocabulary, in fp32: the *sampling* distribution."""
    return F.log_softmax(logits.float() / temperature, dim=-1)


def logprobs_from_logits(logits: Tensor, tokens: Tensor, temperature: float = 1.0) -> Tensor:
    """log softmax(logits / T)[token]: the log-prob under the *sampling* distribution."""
    logp = log_softmax_at(logits, temperature)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logp(logp: Tensor) -> Tensor:
    """Exact per-position entropy −Σ p log p from log-probs over the vocabulary, in nats."""
    return -(logp.exp() * logp).sum(-1)


def entropy_from_logits(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Exact per-position entropy H(softmax(logits / T)) in nats."""
    return entropy_from_logp(log_softmax_at(logits, temperature))


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


def _group_sums(values: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(Σ values per group, members per group, each row's group index)."""
    groups, inverse = torch.unique(group_ids, return_inverse=True)
    sums = values.new_zeros(len(groups)).index_add_(0, inverse, values)
    counts = values.new_zeros(len(groups)).index_add_(0, inverse, torch.ones_like(values))
    return sums, counts, inverse


def leave_one_out_baseline(values: Tensor, group_ids: Tensor) -> Tensor:
    """b_i = mean of the other members of i's group (RLOO; Kool et al. 2019, Ahmadian 2024)."""
    sums, counts, inverse = _group_sums(values, group_ids)
    others = (counts[inverse] - 1).clamp(min=1)
    return (sums[inverse] - values) / others


def group_mean(values: Tensor, group_ids: Tensor) -> Tensor:
    """[N]: the mean of each row's group, mean_{j ∈ g(i)} v_j (GRPO's and REINFORCE++-baseline's
    baseline)."""
    sums, counts, inverse = _group_sums(values, group_ids)
    return (sums / counts)[inverse]


def group_std(values: Tensor, group_ids: Tensor, unbiased: bool = True) -> Tensor:
    """[N]: the standard deviation of each row's group (n − 1 in the denominator when
    ``unbiased``, as torch.std and TRL; a group of one has std 0)."""
    centred = values - group_mean(values, group_ids)
    squares, counts, inverse = _group_sums(centred**2, group_ids)
    denominator = (counts - 1).clamp(min=1) if unbiased else counts
    return (squares / denominator).sqrt()[inverse]


def group_advantages(scores: Tensor, group_ids: Tensor, scale: RewardScale,
                     eps: float = 1e-4) -> Tensor:
    """[N] group-relative advantages Â_i = (R_i − mean_{g(i)} R) / (σ + ε).

    ``scale`` picks σ: ``group`` the std of i's group (GRPO; Shao et al. 2024, eq. 3),
    ``batch`` the std of every score in the batch while the mean stays the group's (Liu et al.
    2025, "Tricks or Traps?"; TRL ``scale_rewards="batch"``), ``none`` no division (Dr. GRPO;
    Liu et al. 2025, "Understanding R1-Zero-Like Training"). Stds are unbiased and ε = 1e-4,
    as in TRL.
    """
    centred = scores - group_mean(scores, group_ids)
    if scale == "none":
        return centred
    if scale == "group":
        return centred / (group_std(scores, group_ids) + eps)
    if scale == "batch":
        std = scores.std() if scores.numel() > 1 else scores.new_zeros(())
        return centred / (std + eps)
    raise ValueError(f"unknown reward scale {scale!r}; valid: group, batch, none")


def preference_pairs(values: Tensor, scores: Tensor,
                     group_ids: Tensor) -> tuple[Tensor, Tensor]:
    """([P], [P]): the per-sequence ``values`` of the chosen and the rejected member of each
    preference pair, a group of two rows whose chosen member scores higher (the ``preferences``
    data kind: 1 and 0), in the order of the sorted group ids. A ValueError if a group is not
    one chosen and one rejected row (a pair split across micro-batches, or tied scores)."""
    _, group = torch.unique(group_ids, return_inverse=True)
    n = int(group.max()) + 1 if len(group) else 0
    chosen = (scores > group_mean(scores, group_ids)).to(values.dtype)
    rejected = 1 - chosen
    counts = [values.new_zeros(n).index_add(0, group, side) for side in (chosen, rejected)]
    if not all(bool((c == 1).all()) for c in counts):
        raise ValueError("each preference pair must be two rows, one scoring above the other, in "
                         "the same (micro)batch: a pair was split or its scores tie")
    return (values.new_zeros(n).index_add(0, group, values * chosen),
            values.new_zeros(n).index_add(0, group, values * rejected))


def sequence_logprobs(logprobs: Tensor, mask: Tensor, length_normalize: bool = False) -> Tensor:
    """[N]: log π(y|x) = Σ_t log π(a_t|s_t) over the response (EOS included), or with
    ``length_normalize`` the per-token mean (1/|y|)·Σ_t log π(a_t|s_t) (SimPO, ORPO, TRL's IPO)."""
    if length_normalize:
        return masked_mean(logprobs, mask, dim=1)
    return masked_sum(logprobs, mask, dim=1)


def sequence_log_ratio(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor,
                       length_normalize: bool) -> Tensor:
    """[N]: the log of a sequence-level importance ratio.

    Summed, log π_θ(y|x) − log π_old(y|x): the whole response as one action (RLOO as TRL and
    Ahmadian et al. 2024 run it). Length-normalised, (1/|y|)·Σ_t log(π_θ(a_t|s_t)/π_old(a_t|s_t)):
    the log of GSPO's s_i(θ) = (π_θ(y_i|x)/π_old(y_i|x))^{1/|y_i|} (Zheng et al. 2025, eq. 7),
    one ratio per response whose scale does not grow with its length.
    """
    return sequence_logprobs(logprobs - old_logprobs, mask, length_normalize)


def clipped_surrogate(ratio: Tensor, advantages: Tensor, eps_low: float | None,
                      eps_high: float | None = None) -> Tensor:
    """Elementwise PPO loss −min(ρ·A, clip(ρ, 1 − ε_low, 1 + ε_high)·A) (Schulman et al. 2017,
    eq. 7), written as max(−ρ·A, −clip(ρ)·A). ``eps_high`` above ``eps_low`` is DAPO's
    clip-higher (Yu et al. 2025): a token with A > 0 may raise its probability further
    (``None``: ε_high = ε_low). ``eps_low=None``: no clip, the plain surrogate −ρ·A. Where the
    clipped term binds the gradient is 0; tensors broadcast (a [N, 1] sequence ratio against
    [N, R] advantages gives one ratio per response)."""
    unclipped = -advantages * ratio
    if eps_low is None:
        return unclipped
    high = eps_low if eps_high is None else eps_high
    clipped = -advantages * ratio.clamp(1 - eps_low, 1 + high)
    return torch.maximum(unclipped, clipped)


def clip_fraction(ratio: Tensor, advantages: Tensor, mask: Tensor, eps_low: float,
                  eps_high: float | None = None) -> Tensor:
    """The share of masked elements where the clipped term binds: A > 0 and ρ > 1 + ε_high,
    or A < 0 and ρ < 1 − ε_low (there −clip(ρ)·A > −ρ·A and the gradient is 0), the definition
    of ``policy/clipfrac`` in :func:`ratio_stats`, for a ratio at any level: per token, or one
    per response ([N, 1] or [N] with a matching mask) for RLOO and GSPO."""
    high = eps_low if eps_high is None else eps_high
    binds = ((advantages > 0) & (ratio > 1 + high)) | ((advantages < 0) & (ratio < 1 - eps_low))
    return masked_mean(binds.to(mask.dtype).expand_as(mask), mask)


def agg_loss(per_token: Tensor, mask: Tensor, mode: LossAggregation | str,
             constant_len: int | None = None) -> Tensor:
    """One loss from per-token terms ℓ_it [N, R] (or [N, 1], one per response) over ``mask``.

    The modes of :data:`rlkit.algorithm.LossAggregation` (verl's ``agg_loss``):
      ``token_mean``               Σ_i Σ_t ℓ_it / Σ_i |y_i|     every token alike (PPO, DAPO)
      ``seq_mean_token_mean``      (1/N)·Σ_i Σ_t ℓ_it / |y_i|   every response alike (GRPO)
      ``seq_mean_token_sum``       (1/N)·Σ_i Σ_t ℓ_it           a sequence log-prob per item
      ``seq_mean_token_sum_norm``  Σ_i Σ_t ℓ_it / (N·L)         a constant divisor (Dr. GRPO)
    L is ``constant_len`` (the generation limit, as Dr. GRPO and TRL), else the padded width R.
    Under the constant divisor a token's weight does not depend on its response's length; under
    ``seq_mean_token_mean`` tokens of short responses weigh more (Liu et al. 2025's length bias).
    """
    if mode == "token_mean":
        return masked_mean(per_token, mask)
    if mode == "seq_mean_token_mean":
        return masked_mean(per_token, mask, dim=1).mean()
    if mode == "seq_mean_token_sum":
        return masked_sum(per_token, mask, dim=1).mean()
    if mode == "seq_mean_token_sum_norm":
        length = mask.shape[-1] if constant_len is None else constant_len
        return masked_sum(per_token, mask) / (mask.shape[0] * length)
    raise ValueError(f"unknown loss aggregation {mode!r}; valid: token_mean, "
                     f"seq_mean_token_mean, seq_mean_token_sum, seq_mean_token_sum_norm")


def log1mexp(x: Tensor) -> Tensor:
    """log(1 − eˣ) for x < 0, accurate everywhere (Mächler 2012): log(−expm1(x)) for
    x > −ln 2, log1p(−eˣ) below. ORPO's log-odds log(p / (1 − p)) = x − log1mexp(x)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


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


def ratio_stats(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor,
                advantages: Tensor | None = None,
                clip_range: tuple[float, float] | None = None) -> dict[str, Tensor]:
    """The engine's one definition of the ratio diagnostics (CleanRL ppo.py), per token:

    ρ_t = exp(log π_θ − log π_old); ``policy/ratio_mean`` = E_t[ρ_t];
    ``policy/approx_kl`` = E_t[(ρ_t − 1) − log ρ_t] (k3 of KL(π_old‖π_θ));
    ``policy/clipfrac`` (only with a clip range and advantages) = the share of tokens where the
    clipped term binds: A_t > 0 and ρ_t > 1 + ε_high, or A_t < 0 and ρ_t < 1 − ε_low (their
    gradient is zero). Advantages are the prepared ones (per token, or per sequence [N, 1]).
    """
    from rlkit import metrics as M

    log_ratio = (logprobs - old_logprobs) * mask
    ratio = torch.exp(log_ratio)
    out = {M.POLICY_RATIO_MEAN: masked_mean(ratio, mask),
           M.POLICY_APPROX_KL: masked_mean((ratio - 1) - log_ratio, mask)}
    if clip_range is not None and advantages is not None:
        adv = advantages if advantages.shape == ratio.shape else advantages.reshape(-1, 1)
        out[M.POLICY_CLIPFRAC] = clip_fraction(ratio, adv, mask, *clip_range)
    return out
