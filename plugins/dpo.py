"""DPO: direct preference optimization on chosen/rejected pairs, no reward model in the loss.

    h(x, y_w, y_l) = [log πθ(y_w|x) − log π_ref(y_w|x)] − [log πθ(y_l|x) − log π_ref(y_l|x)]
    L_DPO  = −E[log σ(β·h)]                                              (Rafailov et al. 2023)
    L_cDPO = −E[(1 − ε)·log σ(β·h) + ε·log σ(−β·h)]      (conservative DPO, label smoothing ε)
    L_IPO  = E[(h − 1/(2β))²]                                 (Azar et al. 2023, β playing τ)

Sequence-level: log π(y|x) = Σ_t log π(a_t|s_t) over the response including EOS, one loss term
per pair (``loss_aggregation = "sequence_mean"``). β is ``kl_coef``: it is the weight of the
KL-to-reference term of the RLHF objective whose optimum DPO fits. The implicit reward
r̂(x, y) = β·log(πθ(y|x)/π_ref(y|x)) gives the logged ``rewards/chosen``, ``rewards/rejected``,
``rewards/margins`` (mean r̂_w − r̂_l) and ``rewards/accuracies`` (share with r̂_w > r̂_l).

Data (``mode``): ``offline`` trains on a preference file (``preferences``: JSONL with prompt,
chosen, rejected) or the task's pairs (the built-in world's); ``online`` samples k responses per
prompt from the current policy each step, ranks them with the reward model and takes the best
and the worst as (y_w, y_l), dropping groups whose rewards tie (Guo et al. 2024, "Direct
Language Model Alignment from Online AI Feedback"; TRL's OnlineDPO).

Rafailov et al. 2023, "Direct Preference Optimization" (arXiv 2305.18290): β 0.1, lr 1e-6;
Mitchell 2023, "A note on DPO with noisy preferences" (cDPO); Azar et al. 2023 (arXiv 2310.12036).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

import rlkit
from rlkit import metrics as M
from rlkit.algorithm import Algorithm, AlgorithmConfig, Experience, PolicyOutput, doc
from rlkit.errors import ConfigError, RlkitError


def dpo_loss(chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             beta: float, loss_type: str = "sigmoid", label_smoothing: float = 0.0,
             weights: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean over pairs of −(1−ε)·log σ(β·h) − ε·log σ(−β·h) (DPO; cDPO when ε > 0) or of
    (h − 1/(2β))² (IPO), h the log-ratio margin above, from sequence log-probs of shape [P].
    ``weights`` (0/1 per pair) drop pairs from the loss but not from the denominator P."""
    h = (chosen - ref_chosen) - (rejected - ref_rejected)
    if loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        losses = (-(1 - label_smoothing) * F.logsigmoid(beta * h)
                  - label_smoothing * F.logsigmoid(-beta * h))
    w = torch.ones_like(losses) if weights is None else weights
    reward_w = beta * (chosen - ref_chosen).detach()  # implicit rewards r̂ = β·log(π/π_ref)
    reward_l = beta * (rejected - ref_rejected).detach()
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
    kl_coef: float = doc(0.1, "β (τ for IPO): the implicit KL weight (Rafailov et al.: 0.1).")
    loss_type: Literal["sigmoid", "ipo"] = doc("sigmoid", "sigmoid: DPO/cDPO; ipo: IPO.")
    label_smoothing: float = doc(0.0, "ε of conservative DPO: the share of flipped labels.")
    mode: Literal["offline", "online"] = doc(
        "offline", "offline: pairs from `preferences` or the task; online: rank k fresh samples.")
    samples_per_prompt: int = doc(2, "Online: responses per prompt (best vs worst form a pair).")
    epochs: int = doc(1, "Passes over each batch of pairs.")
    num_minibatches: int = doc(1, "Optimizer steps per batch.")


class DPO(Algorithm):
    name = "dpo"
    Config = DPOConfig
    data = "preferences"
    loss_aggregation = "sequence_mean"

    def __init__(self, config: DPOConfig, total_steps: int = 1) -> None:
        super().__init__(config, total_steps)
        if config.mode == "online" and config.samples_per_prompt < 2:
            raise ConfigError(
                "Online DPO ranks k ≥ 2 responses per prompt: set algorithm.samples_per_prompt "
                f"≥ 2 (got {config.samples_per_prompt}).")

    def data_source(self) -> str:
        return "preferences" if self.config.mode == "offline" else "rollout"

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
        batch.extras["dpo_role"] = role
        return {"dpo/pair_fraction": float((role > 0).sum() / len(torch.unique(batch.group_ids)))}

    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Tensor]]:
        role, mask = batch.extras["dpo_role"], batch.response_mask
        _, group = torch.unique(batch.group_ids, return_inverse=True)
        n = int(group.max()) + 1

        def per_pair(x: Tensor, side: float) -> Tensor:  # Σ over the group's member with role
            return x.new_zeros(n).index_add(0, group, x * (role == side))

        logp, ref = (out.logprobs * mask).sum(1), (batch.ref_logprobs * mask).sum(1)
        ones = torch.ones_like(logp)
        if not torch.equal(per_pair(ones, 1.0), per_pair(ones, -1.0)):
            raise RlkitError("A preference pair was split across micro-batches: choose "
                             "algorithm.grad_accum_steps so that it divides the pairs per step.")
        loss, metrics = dpo_loss(per_pair(logp, 1.0), per_pair(logp, -1.0), per_pair(ref, 1.0),
                                 per_pair(ref, -1.0), self.kl_coef, self.config.loss_type,
                                 self.config.label_smoothing, weights=per_pair(ones, 1.0))
        return loss, {M.LOSS_POLICY: loss.detach(), **metrics}


@rlkit.hookimpl
def rlkit_register_algorithms(register):
    register(DPO)
