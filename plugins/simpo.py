"""SimPO: simple preference optimization, a reference-free DPO on length-normalised log-probs
with a target margin.

    r̄(x, y) = (β/|y|)·log πθ(y|x) = (β/|y|)·Σ_t log πθ(a_t|s_t)    (EOS included in |y|)
    L_SimPO  = −E[log σ(r̄(x, y_w) − r̄(x, y_l) − γ)]                 (Meng et al. 2024, eq. 6)

The implicit reward is the policy's average log-likelihood, the quantity that decoding ranks
responses by, so there is no reference model (``needs_reference`` False: the engine builds none)
and no KL anchor besides the learning rate. Dividing by |y| removes DPO's incentive to lengthen
responses; γ > 0 asks the chosen response to win by a margin. ``label_smoothing`` ε gives the
conservative form −(1 − ε)·log σ(m) − ε·log σ(−m) of the official code.

Logs ``rewards/chosen`` and ``rewards/rejected`` (mean r̄ of each side), ``rewards/margins`` and
``rewards/accuracies`` (share of pairs with r̄_w > r̄_l). One term per pair, each a token mean
(``loss_aggregation = "seq_mean_token_mean"``).

Meng, Xia, Chen 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward"
(arXiv 2405.14734); defaults from its released configs (Llama-3-Base: β 2.0, γ/β 0.5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

import rlkit
from rlkit import metrics as M
from rlkit.algorithm import Algorithm, AlgorithmConfig, Experience, PolicyOutput, doc
from rlkit.errors import RlkitError
from rlkit.ops import preference_pairs, sequence_logprobs


def simpo_loss(chosen_avg: Tensor, rejected_avg: Tensor, beta: float, gamma: float,
               label_smoothing: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean over pairs of −(1 − ε)·log σ(m) − ε·log σ(−m), m = β·(ā_w − ā_l) − γ, from the
    per-token mean log-probs ā of chosen and rejected responses, shape [P] (Meng et al. 2024)."""
    margin = beta * (chosen_avg - rejected_avg) - gamma
    losses = (-(1 - label_smoothing) * F.logsigmoid(margin)
              - label_smoothing * F.logsigmoid(-margin))
    reward_w, reward_l = beta * chosen_avg.detach(), beta * rejected_avg.detach()
    loss = losses.mean()
    return loss, {M.LOSS_POLICY: loss, M.REWARDS_CHOSEN: reward_w.mean(),
                  M.REWARDS_REJECTED: reward_l.mean(),
                  M.REWARDS_MARGINS: (reward_w - reward_l).mean(),
                  M.REWARDS_ACCURACIES: (reward_w > reward_l).float().mean()}


@dataclass
class SimPOConfig(AlgorithmConfig):
    kl_coef: float = doc(0.0, "Unused: SimPO has no reference model and no KL term.")
    beta: float = doc(2.0, "β: scale of the average log-likelihood reward (Meng et al.: 2.0).")
    gamma: float = doc(1.0, "γ: target reward margin (Meng et al.: γ/β = 0.5).")
    label_smoothing: float = doc(0.0, "ε: share of flipped labels (conservative loss; 0).")
    epochs: int = doc(1, "Passes over each batch of pairs.")
    num_minibatches: int = doc(1, "Optimizer steps per batch.")


class SimPO(Algorithm[SimPOConfig]):
    name = "simpo"
    Config = SimPOConfig
    data_kind = "preferences"
    needs_reference = False
    loss_aggregation = "seq_mean_token_mean"
    reads_old_logprobs = False  # prepare reads only scores and groups

    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        average = sequence_logprobs(out.logprobs, batch.response_mask, length_normalize=True)
        try:
            chosen, rejected = preference_pairs(average, batch.scores, batch.group_ids)
        except ValueError as exc:
            raise RlkitError(f"simpo: {exc}; choose algorithm.grad_accum_steps so that it "
                             f"divides the pairs per step.") from None
        loss, metrics = simpo_loss(chosen, rejected, c.beta, c.gamma, c.label_smoothing)
        return loss, {k: v.detach() for k, v in metrics.items()}


@rlkit.hookimpl
def rlkit_register_algorithms(register: Callable[[type[Algorithm[Any]]], None]) -> None:
    register(SimPO)
