"""RLOO: REINFORCE leave-one-out, the whole response one action, baseline from its siblings.

For each prompt the engine samples k responses (``samples_per_prompt``); each is scored with the
KL-shaped sequence reward and baselined by the mean of the other k − 1:

    R̃_i  = R(x, y_i) − β·Σ_t KL_t(y_i)            (KL to the reference, the engine's estimator)
    A_i  = R̃_i − (1/(k−1))·Σ_{j≠i} R̃_j  =  k/(k−1)·(R̃_i − mean_j R̃_j)
    ρ_i  = πθ(y_i|x) / π_old(y_i|x) = exp(Σ_t log πθ(a_t|s_t) − Σ_t log π_old(a_t|s_t))
    loss = (1/N)·Σ_i −min(ρ_i·A_i, clip(ρ_i, 1 − ε, 1 + ε)·A_i)

With one optimizer step per batch (the paper's and TRL's default) ρ ≡ 1 and the gradient is
REINFORCE's, −A_i·∇Σ_t log πθ(a_t|s_t); with several (``epochs``/``num_minibatches`` > 1) the
sequence ratio and its clip keep the update near π_old, as TRL's RLOOTrainer does.
Sequence-level: one advantage, one ratio and one loss term per response
(``loss_aggregation = "seq_mean_token_sum"``). β = 0 drops the reference model.

Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
Human Feedback in LLMs" (arXiv 2402.14740): k = 4 their best (k ∈ {2, 4}); Kool et al. 2019,
"Buy 4 REINFORCE Samples, Get a Baseline for Free!"; TRL's RLOOTrainer: β 0.05 with the k1 KL
summed over the response, ε 0.2, μ 1, advantages not normalised by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

import rlkit
from rlkit import metrics as M
from rlkit.algorithm import Algorithm, AlgorithmConfig, AlgorithmSpec, Experience, PolicyOutput, doc
from rlkit.errors import ConfigError
from rlkit.ops import clip_fraction, clipped_surrogate, leave_one_out_baseline, sequence_log_ratio


def rloo_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
              clip_eps: float | None) -> tuple[Tensor, dict[str, Tensor]]:
    """(1/N)·Σ_i −min(ρ_i·A_i, clip(ρ_i, 1 ± ε)·A_i) with ρ_i the ratio of whole-response
    probabilities and ``advantages`` [N] (Ahmadian et al. 2024; TRL RLOOTrainer)."""
    ratio = sequence_log_ratio(logprobs, old_logprobs, mask, length_normalize=False).exp()
    loss = clipped_surrogate(ratio, advantages, clip_eps).mean()
    metrics = {M.LOSS_POLICY: loss}
    if clip_eps is not None:  # per response: the engine's policy/clipfrac counts token ratios
        metrics["rloo/seq_clipfrac"] = clip_fraction(ratio, advantages, mask.new_ones(len(ratio)),
                                                     clip_eps)
    return loss, metrics


def rloo_advantages(scores: Tensor, kl: Tensor, mask: Tensor, group_ids: Tensor,
                    kl_coef: float) -> Tensor:
    """[N]: A_i = R̃_i − mean of R̃ over i's k − 1 siblings, R̃ = R − β·Σ_t KL_t."""
    shaped = scores - kl_coef * (kl * mask).sum(1)
    return shaped - leave_one_out_baseline(shaped, group_ids)


@dataclass
class RLOOConfig(AlgorithmConfig):
    kl_coef: float = doc(0.05, "β of the sequence KL penalty in the reward (TRL: 0.05); 0 "
                               "drops the reference model.")
    clip_eps: float | None = doc(0.2, "ε of the sequence-ratio clip, acting when μ > 1 (TRL: "
                                      "0.2); None: plain REINFORCE surrogate.")
    normalize_advantages: bool = doc(False, "Whiten A over the batch (TRL option; off).")
    samples_per_prompt: int = doc(4, "k responses per prompt (Ahmadian et al.: k = 4 best).")
    epochs: int = doc(1, "μ: optimizer passes over each batch (TRL: 1).")
    num_minibatches: int = doc(1, "Optimizer steps per pass (groups are never split).")


class RLOO(Algorithm[RLOOConfig]):
    name = "rloo"
    Config = RLOOConfig
    loss_aggregation = "seq_mean_token_sum"

    def __init__(self, config: RLOOConfig, total_steps: int) -> None:
        super().__init__(config, total_steps)
        if config.samples_per_prompt < 2:
            raise ConfigError("rloo's baseline is the other samples of the prompt: set "
                              f"algorithm.samples_per_prompt ≥ 2 (got {config.samples_per_prompt}).")

    @classmethod
    def spec(cls, config: RLOOConfig) -> AlgorithmSpec:
        """β = 0 needs no reference; the sequence-ratio clip is declared as the clip range."""
        eps = config.clip_eps
        return AlgorithmSpec(needs_reference=config.kl_coef != 0,
                             loss_aggregation="seq_mean_token_sum",
                             clip_range=None if eps is None else (eps, eps))

    def prepare(self, batch: Experience) -> dict[str, float]:
        advantages = rloo_advantages(batch.scores, batch.kl, batch.response_mask,
                                     batch.group_ids, self.kl_coef)
        raw_mean = float(advantages.abs().mean())
        if self.config.normalize_advantages:  # TRL: (A − mean)/(std + 1e-4) over the batch
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-4)
        batch.extras["rloo_advantage"] = advantages  # [N], one per response
        batch.advantages = advantages.unsqueeze(1) * batch.response_mask
        return {"rloo/advantage_abs_mean": raw_mean}

    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Tensor]]:
        loss, metrics = rloo_loss(out.logprobs, batch.logprobs, batch.require("rloo_advantage"),
                                  batch.response_mask, self.config.clip_eps)
        return loss, {k: v.detach() for k, v in metrics.items()}


@rlkit.hookimpl
def rlkit_register_algorithms(register: Callable[[type[Algorithm[Any]]], None]) -> None:
    register(RLOO)
