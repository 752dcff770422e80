"""KTO: Kahneman–Tversky optimization on unpaired desirable/undesirable responses.

Each response y of prompt x is labelled desirable or undesirable, with no partner. With the
implicit reward r(x, y) = log πθ(y|x) − log π_ref(y|x) (sequence log-probs, EOS included):

    z₀      = max(0, mean over mismatched pairs (x_i, y_j), i ≠ j, of r(x_i, y_j))   (no gradient)
    v(x, y) = λ_D·σ(β·(r(x, y) − z₀))   if y is desirable
              λ_U·σ(β·(z₀ − r(x, y)))   if y is undesirable
    loss    = E[λ_y − v(x, y)]                                 (Ethayarajh et al. 2024, eq. 8)

z₀ is the reference point of prospect theory: a batch estimate of KL(πθ ‖ π_ref), taken, as the
paper and TRL do, on responses paired with another example's prompt, so it measures how far the
policy moved on text it was not trained to prefer or avoid. It is detached and clamped at 0. The
engine appends those mismatched rows (``data_options = {"mismatched_pairs": True}``) flagged
``extras["kl_anchor"] = 1``; they enter z₀ only, never the loss. z₀ is computed once per batch in
``prepare`` from π_old (πθ itself on the first minibatch, so with the default single step it is
TRL's value), so every micro-batch of a step sees the same reference point.

λ_D, λ_U (``desirable_weight``, ``undesirable_weight``) correct an imbalance: the paper advises
λ_D·n_D / (λ_U·n_U) ∈ [1, 4/3]. Logs ``rewards/chosen`` and ``rewards/rejected`` (mean β·r of
the desirable and undesirable responses), ``rewards/margins`` (their difference) and ``kto/kl``
(z₀). Sequence-level: one loss term per labelled response (``seq_mean_token_sum``).

Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization" (arXiv
2402.01306): β 0.1, λ_D = λ_U = 1; TRL's KTOTrainer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import rlkit
from rlkit import metrics as M
from rlkit.algorithm import Algorithm, AlgorithmConfig, AlgorithmSpec, Experience, PolicyOutput, doc
from rlkit.ops import sequence_logprobs


def kto_reference_point(logratios: Tensor, anchor: Tensor) -> Tensor:
    """z₀ = max(0, mean of the log-ratios r of the mismatched rows), detached; 0 without any."""
    n = anchor.sum()
    if n == 0:
        return logratios.new_zeros(())
    return ((logratios * anchor).sum() / n).clamp(min=0).detach()


def kto_loss(logratios: Tensor, desirable: Tensor, labelled: Tensor, z0: Tensor, beta: float,
             desirable_weight: float, undesirable_weight: float
             ) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean over the ``labelled`` rows of λ_y·(1 − σ(±β·(r − z₀))), + for ``desirable`` rows
    (Ethayarajh et al. 2024, eq. 8); ``logratios`` r = log πθ(y|x) − log π_ref(y|x), [N]."""
    good = desirable * labelled
    bad = (1 - desirable) * labelled
    losses = (good * desirable_weight * (1 - torch.sigmoid(beta * (logratios - z0)))
              + bad * undesirable_weight * (1 - torch.sigmoid(beta * (z0 - logratios))))
    loss = losses.sum() / labelled.sum().clamp(min=1)
    rewards = beta * logratios.detach()
    chosen = (good * rewards).sum() / good.sum().clamp(min=1)
    rejected = (bad * rewards).sum() / bad.sum().clamp(min=1)
    return loss, {M.LOSS_POLICY: loss, M.REWARDS_CHOSEN: chosen, M.REWARDS_REJECTED: rejected,
                  M.REWARDS_MARGINS: chosen - rejected, "kto/kl": z0}


@dataclass
class KTOConfig(AlgorithmConfig):
    kl_coef: float = doc(0.1, "β: scale of the implicit reward in the value function "
                              "(Ethayarajh et al.: 0.1).")
    desirable_weight: float = doc(1.0, "λ_D, the weight of desirable responses (paper: 1).")
    undesirable_weight: float = doc(1.0, "λ_U, the weight of undesirable responses (paper: 1).")
    epochs: int = doc(1, "Passes over each batch.")
    num_minibatches: int = doc(1, "Optimizer steps per batch.")


class KTO(Algorithm[KTOConfig]):
    name = "kto"
    Config = KTOConfig
    data_kind = "unpaired"
    loss_aggregation = "seq_mean_token_sum"

    @classmethod
    def spec(cls, config: KTOConfig) -> AlgorithmSpec:
        """Unpaired labels plus mismatched (x_i, y_j) rows for the reference point z₀."""
        return AlgorithmSpec(data_kind="unpaired", data_options={"mismatched_pairs": True},
                             needs_reference=True, loss_aggregation="seq_mean_token_sum")

    def prepare(self, batch: Experience) -> dict[str, float]:
        anchor = batch.require("kl_anchor").to(batch.scores.dtype)
        logratios = sequence_logprobs(batch.logprobs - batch.require("ref_logprobs"),
                                      batch.response_mask)
        z0 = kto_reference_point(logratios, anchor)
        batch.extras["kto_z0"] = z0.expand(len(batch)).clone()
        return {"kto/kl": float(z0), "kto/desirable_fraction": float(
            ((batch.scores > 0.5).float() * (1 - anchor)).sum() / (1 - anchor).sum().clamp(min=1))}

    def loss_weight(self, batch: Experience) -> Tensor:
        """The loss is a mean over the labelled rows (the anchors only estimate z₀): their
        count weighs a micro-batch, so accumulation gives the minibatch's mean."""
        return (1 - batch.require("kl_anchor").float()).sum()

    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Tensor]]:
        mask, c = batch.response_mask, self.config
        logratios = sequence_logprobs(out.logprobs - batch.require("ref_logprobs"), mask)
        labelled = 1 - batch.require("kl_anchor").to(logratios.dtype)
        desirable = (batch.scores > 0.5).to(logratios.dtype)
        z0 = batch.require("kto_z0")[0] if len(batch) else logratios.new_zeros(())
        loss, metrics = kto_loss(logratios, desirable, labelled, z0, self.kl_coef,
                                 c.desirable_weight, c.undesirable_weight)
        return loss, {k: v.detach() for k, v in metrics.items()}


@rlkit.hookimpl
def rlkit_register_algorithms(register: Callable[[type[Algorithm[Any]]], None]) -> None:
    register(KTO)
