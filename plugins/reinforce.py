"""REINFORCE: vanilla policy gradient on the KL-shaped sequence reward.

    R̃(x, y) = R(x, y) − β · Σ_t KL_t                      (KL to the reference, engine's estimator)
    ∇J(θ)   = E[(R̃(x, y) − b(x)) · ∇θ Σ_t log πθ(a_t | s_t)]
    loss    = −mean_i (R̃_i − b_i) · Σ_t log πθ(a_t | s_t)

Baselines b: ``none`` (b = 0), ``moving_average`` (an exponential moving average of R̃ over
past batches), ``leave_one_out`` (RLOO: the mean R̃ of the other k−1 samples of the same
prompt). Williams 1992, "Simple statistical gradient-following algorithms for connectionist
reinforcement learning"; Kool et al. 2019 and Ahmadian et al. 2024 ("Back to Basics") for RLOO.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

import rlkit
from rlkit.algorithm import Algorithm, AlgorithmConfig, Experience, PolicyOutput, doc
from rlkit.errors import ConfigError
from rlkit.ops import leave_one_out_baseline


@dataclass
class ReinforceConfig(AlgorithmConfig):
    baseline: Literal["none", "moving_average", "leave_one_out"] = doc(
        "moving_average", "b(x): none, moving_average (EMA of R̃), leave_one_out (needs k ≥ 2)."
    )
    baseline_decay: float = doc(0.9, "EMA decay of the moving-average baseline.", ge=0,
                                 le=1)


class Reinforce(Algorithm[ReinforceConfig]):
    name = "reinforce"
    Config = ReinforceConfig
    loss_aggregation = "seq_mean_token_sum"  # one term per sequence: a sequence log-prob

    def __init__(self, config: ReinforceConfig, total_steps: int = 1) -> None:
        super().__init__(config, total_steps)
        if config.baseline == "leave_one_out" and config.samples_per_prompt < 2:
            raise ConfigError(
                "algorithm.baseline=leave_one_out needs algorithm.samples_per_prompt ≥ 2 "
                f"(got {config.samples_per_prompt})."
            )
        self.running_baseline: float | None = None

    def prepare(self, batch: Experience) -> dict[str, float]:
        shaped = batch.scores - self.kl_coef * batch.kl.sum(1)  # R̃, shape [N]
        if self.config.baseline == "leave_one_out":
            baseline = leave_one_out_baseline(shaped, batch.group_ids)
        elif self.config.baseline == "moving_average" and self.running_baseline is not None:
            baseline = shaped.new_full(shaped.shape, self.running_baseline)
        else:
            baseline = shaped.new_zeros(shaped.shape)
        batch.advantages = (shaped - baseline).unsqueeze(1) * batch.response_mask  # [N, R]
        mean = float(shaped.mean())
        decay = self.config.baseline_decay
        self.running_baseline = (
            mean if self.running_baseline is None
            else decay * self.running_baseline + (1 - decay) * mean
        )
        return {"reinforce/baseline": float(baseline.mean()), "reinforce/shaped_reward": mean}

    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Tensor]]:
        advantages = batch.require("advantages")
        advantage = advantages[:, 0] if advantages.shape[1] else batch.scores * 0
        seq_logprob = (out.logprobs * batch.response_mask).sum(1)  # Σ_t log πθ(a_t|s_t)
        loss = -(advantage * seq_logprob).mean()
        return loss, {"loss/policy": loss.detach()}

    def state_dict(self) -> dict[str, float]:
        return {} if self.running_baseline is None else {"running_baseline": self.running_baseline}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.running_baseline = state.get("running_baseline")


@rlkit.hookimpl
def rlkit_register_algorithms(register: Callable[[type[Algorithm[Any]]], None]) -> None:
    register(Reinforce)
