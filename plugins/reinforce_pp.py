"""REINFORCE++: REINFORCE with PPO's tricks and no critic: a token-level KL-shaped reward,
returns normalised over the whole batch, and the clipped surrogate.

    r_t  = −β·KL_t + [t = T]·R̃(x, y)               (KL to the reference, the engine's estimator)
    G_t  = Σ_{s≥t} γ^{s−t}·r_s                                          (γ = 1: reward-to-go)
    A_t  = (G_t − mean_batch G) / std_batch G         (every token of the batch; no critic)
    loss = E_t[−min(ρ_t·A_t, clip(ρ_t, 1 − ε, 1 + ε)·A_t)]                      (token mean)

R̃ is the score R, or with ``baseline = "group_mean"`` (REINFORCE++-baseline) the score minus
the mean score of the prompt's k samples, R̃_i = R_i − mean_j R_j, before the KL shaping and the
batch normalisation: the group mean removes the prompt's difficulty and the global std keeps the
scale stable where a per-group std would blow up near-tied groups (Hu et al. 2025, §3).

Without a baseline, one sample per prompt is enough (k = 1): the batch normalisation is the
baseline. With ``kl_placement = "loss"`` the KL leaves the reward and β·E_t[KL_t] is added to the
loss with ``kl_loss_estimator`` (k2 in OpenRLHF's REINFORCE++-baseline recipes: its gradient is
the true KL's for on-policy samples; k3's is biased).

The normalisation divides by the population std (n, not n − 1), as OpenRLHF does.

Hu et al. 2025, "REINFORCE++: An Efficient RLHF Algorithm with Robustness to Both Prompt and
Reward Models" (arXiv 2501.03262); defaults from OpenRLHF (its reference implementation,
``--algo.advantage.estimator reinforce | reinforce_baseline``): β 0.01 (``init_kl_coef``), k1 in
the reward, γ 1, ε 0.2, several minibatch steps per rollout (rollout 1024 / train 128 there;
4 here, as ``ppo_max``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

import rlkit
from rlkit import metrics as M
from rlkit.algorithm import Algorithm, AlgorithmConfig, AlgorithmSpec, Experience, PolicyOutput, doc
from rlkit.errors import ConfigError
from rlkit.ops import (
    KLEstimator,
    agg_loss,
    clipped_surrogate,
    discounted_returns,
    group_mean,
    kl_penalty,
    masked_mean,
    masked_whiten,
    tokens_reward,
)


def reinforce_pp_advantages(scores: Tensor, kl: Tensor, mask: Tensor, group_ids: Tensor,
                            kl_coef: float, gamma: float, baseline: str) -> Tensor:
    """[N, R]: reward-to-go of r_t = −β·KL_t + [t = T]·R̃, whitened over every token of the batch
    (population std); R̃ = R − mean of the prompt's scores with the ``group_mean`` baseline."""
    if baseline == "group_mean":
        scores = scores - group_mean(scores, group_ids)
    elif baseline != "none":
        raise ValueError(f"unknown baseline {baseline!r}; valid: none, group_mean")
    returns = discounted_returns(tokens_reward(scores, kl, kl_coef, mask), mask, gamma)
    return masked_whiten(returns, mask, unbiased=False)


@dataclass
class ReinforcePPConfig(AlgorithmConfig):
    kl_coef: float = doc(0.01, "β of the token-level KL penalty (OpenRLHF init_kl_coef: 0.01).")
    baseline: Literal["none", "group_mean"] = doc(
        "none", "none: REINFORCE++; group_mean: REINFORCE++-baseline, R minus the prompt's "
        "mean score (needs k ≥ 2).")
    kl_placement: Literal["reward", "loss"] = doc(
        "reward", "reward: −β·KL_t in r_t; loss: β·E_t[KL_t] in the loss.")
    kl_loss_estimator: KLEstimator = doc("k2", "Estimator of the loss-side KL (kl_placement "
                                               "= loss; OpenRLHF's recipes: k2).")
    clip_eps: float = doc(0.2, "ε of the ratio clip (OpenRLHF eps_clip: 0.2).")
    gamma: float = doc(1.0, "γ: discount of the reward-to-go (OpenRLHF: 1).")
    epochs: int = doc(1, "Passes over each batch (OpenRLHF max_epochs: 1).")
    num_minibatches: int = doc(4, "Optimizer steps per pass, so the clip acts (OpenRLHF: "
                                  "rollout/train batch; ppo_max: 4).")


class ReinforcePP(Algorithm[ReinforcePPConfig]):
    name = "reinforce_pp"
    Config = ReinforcePPConfig
    loss_aggregation = "token_mean"

    def __init__(self, config: ReinforcePPConfig, total_steps: int) -> None:
        super().__init__(config, total_steps)
        if config.baseline == "group_mean" and config.samples_per_prompt < 2:
            raise ConfigError("algorithm.baseline=group_mean subtracts the mean score of a "
                              "prompt's samples: set algorithm.samples_per_prompt ≥ 2 (got "
                              f"{config.samples_per_prompt}).")

    @classmethod
    def spec(cls, config: ReinforcePPConfig) -> AlgorithmSpec:
        return AlgorithmSpec(needs_reference=config.kl_coef != 0, loss_aggregation="token_mean",
                             clip_range=(config.clip_eps, config.clip_eps))

    def prepare(self, batch: Experience) -> dict[str, float]:
        c, mask = self.config, batch.response_mask
        kl = batch.kl if c.kl_placement == "reward" else torch.zeros_like(batch.kl)
        batch.advantages = reinforce_pp_advantages(batch.scores, kl, mask, batch.group_ids,
                                                   self.kl_coef, c.gamma, c.baseline)
        return {}

    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Tensor]]:
        c, mask = self.config, batch.response_mask
        ratio = torch.exp(out.logprobs - batch.logprobs)
        per_token = clipped_surrogate(ratio, batch.require("advantages"), c.clip_eps)
        policy = agg_loss(per_token, mask, "token_mean")
        metrics = {M.LOSS_POLICY: policy}
        loss = policy
        if c.kl_placement == "loss":
            kl = masked_mean(kl_penalty(out.logprobs, batch.require("ref_logprobs"),
                                        c.kl_loss_estimator), mask)
            loss = loss + self.kl_coef * kl
            metrics["reinforce_pp/kl_loss"] = kl
        return loss, {k: v.detach() for k, v in metrics.items()}


@rlkit.hookimpl
def rlkit_register_algorithms(register: Callable[[type[Algorithm[Any]]], None]) -> None:
    register(ReinforcePP)
