"""DPO: direct preference optimization on chosen/rejected pairs, no reward model in the loss.

    h(x, y_w, y_l) = [log πθ(y_w|x) − log π_ref(y_w|x)] − [log πθ(y_l|x) − log π_ref(y_l|x)]
    L_DPO    = −E[log σ(β·h)]                                            (Rafailov et al. 2023)
    L_cDPO   = −E[(1 − ε)·log σ(β·h) + ε·log σ(−β·h)]    (conservative DPO, label smoothing ε)
    L_robust = E[(−(1 − ε)·log σ(β·h) + ε·log σ(−β·h)) / (1 − 2ε)]    (Chowdhury et al. 2024)
    L_IPO    = E[(h − 1/(2β))²]                               (Azar et al. 2023, β playing τ)
    L_BCO    = E[−log σ(β·ℓ_w − δ) − log σ(−(β·ℓ_l − δ))]            (Jung et al. 2024, pairs)

with ℓ = log πθ(y|x) − log π_ref(y|x). rDPO divides cDPO's flipped term by 1 − 2ε and gives it
the opposite sign, which makes the loss an unbiased estimate of the clean-label DPO loss when a
share ε of the labels is flipped (ε < 1/2). BCO trains a binary classifier whose logit is the
implicit reward β·ℓ, shifted by δ, the running mean of the implicit rewards seen so far.

IPO's h: the paper (Azar et al., eq. 17) writes it with sequence log-probabilities, the sums
used here by default; TRL divides each log-ratio by its response's length (``ipo_length_normalize``),
which the IPO authors told TRL is what the paper's experiments ran.

Sequence-level: log π(y|x) = Σ_t log π(a_t|s_t) over the response including EOS, one loss term
per pair (``loss_aggregation = "seq_mean_token_sum"``). β is ``kl_coef``: it is the weight of
the KL-to-reference term of the RLHF objective whose optimum DPO fits. The implicit reward
r̂(x, y) = β·log(πθ(y|x)/π_ref(y|x)) gives the logged ``rewards/chosen``, ``rewards/rejected``,
``rewards/margins`` (mean r̂_w − r̂_l) and ``rewards/accuracies`` (share with r̂_w > r̂_l).

Data (``mode``): ``offline`` trains on a preference file (``preferences``: JSONL with prompt,
chosen, rejected) or the task's pairs (data kind ``preferences``); ``online`` samples fresh
responses from the current policy each step, ranks them with the reward and takes the best and
the worst of each prompt as (y_w, y_l), dropping groups whose rewards tie (data kind
``judged_pairs``; Guo et al. 2024, "Direct Language Model Alignment from Online AI Feedback";
TRL's OnlineDPO).

Rafailov et al. 2023, "Direct Preference Optimization" (arXiv 2305.18290): β 0.1, lr 1e-6;
Mitchell 2023, "A note on DPO with noisy preferences" (cDPO); Azar et al. 2023 (arXiv
2310.12036); Chowdhury et al. 2024, "Provably Robust DPO" (arXiv 2403.00409); Jung et al. 2024,
"Binary Classifier Optimization for Large Language Model Alignment" (arXiv 2404.04656).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

import rlkit
from rlkit import metrics as M
from rlkit.algorithm import Algorithm, AlgorithmConfig, AlgorithmSpec, Experience, PolicyOutput, doc
from rlkit.errors import ConfigError, RlkitError
from rlkit.ops import RunningMoments, sequence_logprobs

LossType = Literal["sigmoid", "ipo", "robust", "bco_pair"]


def dpo_loss(chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             beta: float, loss_type: str = "sigmoid", label_smoothing: float = 0.0,
             weights: Tensor | None = None, lengths: tuple[Tensor, Tensor] | None = None,
             delta: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean over pairs of the ``loss_type`` term above from sequence log-probs of shape [P]:
    sigmoid (DPO; cDPO when ε > 0), robust (rDPO), ipo, bco_pair (with reward shift ``delta``).
    ``lengths`` (|y_w|, |y_l|) turns IPO's log-ratios into per-token means (TRL).
    ``weights`` (0/1 per pair) drop pairs from the loss but not from the denominator P."""
    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    h = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = (-(1 - label_smoothing) * F.logsigmoid(beta * h)
                  - label_smoothing * F.logsigmoid(-beta * h))
    elif loss_type == "ipo":
        if lengths is not None:
            h = chosen_ratio / lengths[0].clamp(min=1) - rejected_ratio / lengths[1].clamp(min=1)
        losses = (h - 1 / (2 * beta)) ** 2
    elif loss_type == "robust":
        losses = ((-(1 - label_smoothing) * F.logsigmoid(beta * h)
                   + label_smoothing * F.logsigmoid(-beta * h)) / (1 - 2 * label_smoothing))
    elif loss_type == "bco_pair":
        losses = (-F.logsigmoid(beta * chosen_ratio - delta)
                  - F.logsigmoid(-(beta * rejected_ratio - delta)))
    else:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; valid: sigmoid, ipo, robust, "
                         f"bco_pair")
    w = torch.ones_like(losses) if weights is None else weights
    reward_w = beta * chosen_ratio.detach()  # implicit rewards r̂ = β·log(π/π_ref)
    reward_l = beta * rejected_ratio.detach()
    n = w.sum().clamp(min=1)
    metrics = {
        M.REWARDS_CHOSEN: (w * reward_w).sum() / n,
        M.REWARDS_REJECTED: (w * reward_l).sum() / n,
        M.REWARDS_MARGINS: (w * (reward_w - reward_l)).sum() / n,
        M.REWARDS_ACCURACIES: (w * (reward_w > reward_l).float()).sum() / n,
    }
    return (w * losses).sum() / max(len(losses), 1), metrics


@dataclass
class DPOConfig(AlgorithmConfig):
    kl_coef: float = doc(0.1, "β (τ for IPO): the implicit KL weight (Rafailov et al.: 0.1).",
                         gt=0)
    loss_type: LossType = doc(
        "sigmoid", "sigmoid: DPO/cDPO; ipo: IPO; robust: rDPO (needs label_smoothing < 0.5); "
        "bco_pair: BCO on pairs.")
    label_smoothing: float = doc(
        0.0, "ε: the share of flipped labels (cDPO with sigmoid, rDPO with robust).", ge=0,
        le=0.5)
    ipo_length_normalize: bool = doc(
        False, "IPO only: per-token mean log-ratios (TRL) instead of the paper's sums.")
    mode: Literal["offline", "online"] = doc(
        "offline", "offline: pairs from `preferences` or the task; online: rank fresh samples.")
    samples_per_prompt: int = doc(2, "Online: responses per prompt (best vs worst form a pair).")
    epochs: int = doc(1, "Passes over each batch of pairs.")
    num_minibatches: int = doc(1, "Optimizer steps per batch.")


class DPO(Algorithm[DPOConfig]):
    name = "dpo"
    Config = DPOConfig
    data_kind = "preferences"
    loss_aggregation = "seq_mean_token_sum"

    def __init__(self, config: DPOConfig, total_steps: int = 1) -> None:
        super().__init__(config, total_steps)
        if config.mode == "online" and config.samples_per_prompt < 2:
            raise ConfigError(
                "Online DPO ranks k ≥ 2 responses per prompt: set algorithm.samples_per_prompt "
                f"≥ 2 (got {config.samples_per_prompt}).")
        if config.loss_type == "robust" and not 0 <= config.label_smoothing < 0.5:
            raise ConfigError("algorithm.loss_type=robust divides by 1 − 2ε: set "
                              f"algorithm.label_smoothing in [0, 0.5) (got {config.label_smoothing}).")
        if config.ipo_length_normalize and config.loss_type != "ipo":
            raise ConfigError("algorithm.ipo_length_normalize applies to loss_type=ipo only "
                              f"(got loss_type={config.loss_type}).")
        self.reward_moments = RunningMoments()  # bco_pair: δ, the running mean implicit reward

    @classmethod
    def spec(cls, config: DPOConfig) -> AlgorithmSpec:
        """Offline pairs from a file or the task; online pairs ranked by the reward."""
        return AlgorithmSpec(
            data_kind="preferences" if config.mode == "offline" else "judged_pairs",
            needs_reference=True,
            loss_aggregation="seq_mean_token_mean" if config.ipo_length_normalize
            else "seq_mean_token_sum",
            reads_old_logprobs=config.loss_type == "bco_pair")  # bco_pair's δ reads π_old

    def prepare(self, batch: Experience) -> dict[str, float]:
        """Role of each sequence: +1 chosen, −1 rejected, 0 unused (online: ties, middles)."""
        if self.config.mode == "offline":
            role = torch.where(batch.scores > 0.5, 1.0, -1.0)
        else:
            role = torch.zeros_like(batch.scores)
            for group in torch.unique(batch.group_ids):
                index = torch.nonzero(batch.group_ids == group).squeeze(1)
                scores = batch.scores[index]
                if scores.max() > scores.min():
                    role[index[scores.argmax()]], role[index[scores.argmin()]] = 1.0, -1.0
            if "pair_valid" in batch.extras:  # judged pairs come ranked, a tie flagged 0
                role = role * batch.extras["pair_valid"]
        batch.extras["dpo_role"] = role
        metrics = {"dpo/pair_fraction": float((role > 0).sum() / len(torch.unique(batch.group_ids)))}
        if self.config.loss_type == "bco_pair":  # δ from π_old (= πθ at the first minibatch)
            log_ratio = sequence_logprobs(batch.logprobs - batch.require("ref_logprobs"),
                                          batch.response_mask)
            self.reward_moments.update(self.kl_coef * log_ratio[role != 0])
            metrics["dpo/bco_delta"] = self.reward_moments.mean
        return metrics

    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Tensor]]:
        role, mask = batch.extras["dpo_role"], batch.response_mask
        _, group = torch.unique(batch.group_ids, return_inverse=True)
        n = int(group.max()) + 1

        def per_pair(x: Tensor, side: float) -> Tensor:  # Σ over the group's member with role
            return x.new_zeros(n).index_add(0, group, x * (role == side))

        logp = (out.logprobs * mask).sum(1)
        ref = (batch.require("ref_logprobs") * mask).sum(1)
        ones = torch.ones_like(logp)
        if not torch.equal(per_pair(ones, 1.0), per_pair(ones, -1.0)):
            raise RlkitError("A preference pair was split across micro-batches: choose "
                             "algorithm.grad_accum_steps so that it divides the pairs per step.")
        c = self.config
        lengths = None
        if c.ipo_length_normalize:
            length = mask.sum(1).to(logp.dtype)
            lengths = (per_pair(length, 1.0), per_pair(length, -1.0))
        loss, metrics = dpo_loss(per_pair(logp, 1.0), per_pair(logp, -1.0), per_pair(ref, 1.0),
                                 per_pair(ref, -1.0), self.kl_coef, c.loss_type,
                                 c.label_smoothing, weights=per_pair(ones, 1.0), lengths=lengths,
                                 delta=self.reward_moments.mean)
        return loss, {M.LOSS_POLICY: loss.detach(), **metrics}

    def state_dict(self) -> dict[str, Any]:
        return {"reward_moments": self.reward_moments.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "reward_moments" in state:
            self.reward_moments.load_state_dict(state["reward_moments"])


@rlkit.hookimpl
def rlkit_register_algorithms(register: Callable[[type[Algorithm[Any]]], None]) -> None:
    register(DPO)
