"""ORPO: odds-ratio preference optimization, supervised fine-tuning on the chosen response plus
an odds-ratio term against the rejected one, with no reference model.

    P(y|x)   = exp((1/|y|)·Σ_t log πθ(a_t|s_t))           (length-normalised likelihood)
    odds(y)  = P(y|x) / (1 − P(y|x))
    L_SFT    = −(1/|y_w|)·Σ_t log πθ(a_t|s_t)  over y_w    (NLL of the chosen response)
    L_OR     = −log σ(log odds(y_w) − log odds(y_l))
    L_ORPO   = E[L_SFT + λ·L_OR]                            (Hong et al. 2024, eq. 6)

log odds(y) = log P − log(1 − P) is computed with ``rlkit.ops.log1mexp``; the average
log-prob is capped just below 0 (a response of probability 1 would have infinite odds). The
NLL keeps the policy near the chosen data, which is why ORPO needs no reference model
(``needs_reference`` False) and no separate SFT stage. The paper's L_SFT is the chosen
response's NLL (the prompt is not trained on; TRL's ORPOTrainer also trains the prompt tokens).

Logs ``rewards/chosen`` and ``rewards/rejected`` (λ·average log-prob, as TRL), their margin and
accuracy, ``orpo/nll`` (L_SFT) and ``orpo/log_odds_ratio`` (mean log odds(y_w) − log odds(y_l)).
One term per pair, each from token means (``loss_aggregation = "seq_mean_token_mean"``).

Hong, Lee, Thorne 2024, "ORPO: Monolithic Preference Optimization without Reference Model"
(arXiv 2403.07691): λ 0.1 (TRL's ORPOConfig.beta, the code's ``alpha``).
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
from rlkit.ops import log1mexp, preference_pairs, sequence_logprobs

MAX_AVERAGE_LOGPROB = -1e-6  # log P < 0: P = 1 has infinite odds


def orpo_loss(chosen_avg: Tensor, rejected_avg: Tensor,
              lam: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean over pairs of −ā_w + λ·(−log σ(log odds_w − log odds_l)), log odds = ā − log(1 − e^ā),
    from the per-token mean log-probs ā, shape [P] (Hong et al. 2024, eq. 6–7)."""
    chosen_avg = chosen_avg.clamp(max=MAX_AVERAGE_LOGPROB)
    rejected_avg = rejected_avg.clamp(max=MAX_AVERAGE_LOGPROB)
    log_odds = (chosen_avg - log1mexp(chosen_avg)) - (rejected_avg - log1mexp(rejected_avg))
    nll = -chosen_avg.mean()
    odds_ratio = -F.logsigmoid(log_odds).mean()
    loss = nll + lam * odds_ratio
    reward_w, reward_l = lam * chosen_avg.detach(), lam * rejected_avg.detach()
    return loss, {M.LOSS_POLICY: loss, M.REWARDS_CHOSEN: reward_w.mean(),
                  M.REWARDS_REJECTED: reward_l.mean(),
                  M.REWARDS_MARGINS: (reward_w - reward_l).mean(),
                  M.REWARDS_ACCURACIES: (reward_w > reward_l).float().mean(),
                  "orpo/nll": nll, "orpo/log_odds_ratio": log_odds.mean()}


@dataclass
class ORPOConfig(AlgorithmConfig):
    kl_coef: float = doc(0.0, "Unused: ORPO has no reference model and no KL term.")
    lam: float = doc(0.1, "λ: weight of the odds-ratio term (Hong et al.: 0.1).")
    epochs: int = doc(1, "Passes over each batch of pairs.")
    num_minibatches: int = doc(1, "Optimizer steps per batch.")


class ORPO(Algorithm[ORPOConfig]):
    name = "orpo"
    Config = ORPOConfig
    data_kind = "preferences"
    needs_reference = False
    loss_aggregation = "seq_mean_token_mean"
    reads_old_logprobs = False  # prepare reads only scores and groups

    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Tensor]]:
        average = sequence_logprobs(out.logprobs, batch.response_mask, length_normalize=True)
        try:
            chosen, rejected = preference_pairs(average, batch.scores, batch.group_ids)
        except ValueError as exc:
            raise RlkitError(f"orpo: {exc}; choose algorithm.grad_accum_steps so that it "
                             f"divides the pairs per step.") from None
        loss, metrics = orpo_loss(chosen, rejected, self.config.lam)
        return loss, {k: v.detach() for k, v in metrics.items()}


@rlkit.hookimpl
def rlkit_register_algorithms(register: Callable[[type[Algorithm[Any]]], None]) -> None:
    register(ORPO)
