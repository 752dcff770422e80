"""PPO-max: PPO-clip plus the tricks that Zheng et al. 2023 found to make RLHF-PPO stable.

Each trick is a flag below, set to the paper's value (its §5.4 recipe and ablations):
  1. reward normalization and clipping with running moments (``reward_norm``, ``reward_clip``):
         R̃ = clip((R − μ_hist) / σ_hist, −δ, δ)
     μ, σ are the running mean and std of every score seen so far (``rlkit.ops.RunningMoments``,
     updated with the batch before it is normalized);
  2. token-level KL penalty (``kl_coef`` η, ``kl_placement = "reward"``):
         r_t = −η·KL_t + [t = T]·R̃;
  3. advantage whitening per minibatch (``whiten_advantages``);
  4. value-loss clipping (``value_clip``);
  5. global gradient clipping (``max_grad_norm``; PPO-clip has it too, as every maintained PPO
     implementation does);
  6. critic initialized from the reward model (``critic_init``) and warmed up before the policy
     moves (``critic_warmup_steps``: the first updates train the critic only);
  7. PPO-ptx: + γ_ptx·L_LM on the SFT texts (``ptx_coef``, off by default; InstructGPT);
  8. a small experience buffer: each rollout batch is the buffer, used once (``epochs = 1``) in
     4 minibatches (the paper's rollout 128 / train batch 32).
Everything else (the clipped surrogate, GAE, the loss) is PPO-clip's (``rlkit_plugins.ppo_clip``).

Paper versus released code (MOSS-RLHF), following the paper: GAE λ = 0.9 (App. C.3; code 0.95);
η = 0.05 (Fig. 7; code 0.02, English script 0.01); reward normalization *with* mean subtraction
and clip δ = 0.8 (Fig. 6 ablates δ = 0.3 and 0.8; the script only scales by 1/σ and does not
clip); critic warm-up (the paper recommends pre-training the critic; the code has no such
stage; it gives no step count, so it is off unless set); advantage whitening per minibatch (the
script leaves it off). The paper gives no value-loss weight, so c_v stays PPO-clip's 0.1
(code: 1.0).

Zheng et al. 2023, "Secrets of RLHF in Large Language Models Part I: PPO" (arXiv 2307.04964);
Ouyang et al. 2022 (InstructGPT, arXiv 2203.02155) for PPO-ptx.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from torch import Tensor

import rlkit
from rlkit.algorithm import Algorithm, Experience, PolicyOutput, doc
from rlkit.errors import ConfigError
from rlkit.ops import RunningMoments
from rlkit_plugins.ppo_clip import PPOClip, PPOClipConfig

if TYPE_CHECKING:
    from rlkit.api import RunContext


def normalize_reward(scores: Tensor, mean: float, std: float, clip: float | None) -> Tensor:
    """R̃ = clip((R − μ) / σ, −δ, δ), μ and σ over every score so far (Zheng et al. 2023)."""
    normalized = (scores - mean) / max(std, 1e-8)
    return normalized if clip is None else normalized.clamp(-clip, clip)


@dataclass
class PPOMaxConfig(PPOClipConfig):
    reward_norm: bool = doc(True, "Normalize R by the running mean and std of all scores.")
    reward_clip: float | None = doc(0.8, "δ: clip the normalized R to ±δ (Fig. 6: 0.3, 0.8).",
                                     gt=0)
    kl_coef: float = doc(0.05, "η of the token-level KL penalty (Fig. 7: 0.05).")
    kl_placement: Literal["reward", "loss"] = doc("reward", "Token-level: shaped into r_t.")
    lam: float = doc(0.9, "λ of GAE (App. C.3: 0.9).")
    whiten_advantages: Literal["none", "batch", "minibatch"] = doc(
        "minibatch", "Whiten A_t per minibatch, as in the paper's ablations.")
    value_clip: float | None = doc(0.2, "ε_v of the clipped value loss (code: 0.2).")
    max_grad_norm: float | None = doc(1.0, "Global grad-norm clip (on in App. C.2; code: 1.0).")
    critic_init: Literal["auto", "reward", "policy"] = doc(
        "auto", "Critic from the reward model (§5.4); auto: the policy when the reward model "
        "is a function or has another tokenizer.")
    critic_warmup_steps: int = doc(0, "First updates that train the critic only (§5.4).",
                                   ge=0)
    ptx_coef: float = doc(0.0, "γ_ptx of the PPO-ptx LM loss on the task's SFT texts.", ge=0)
    ptx_batch_size: int = doc(8, "SFT texts per micro-batch for the PPO-ptx loss.", ge=1)
    epochs: int = doc(1, "Small buffer: each rollout batch is used once.")
    num_minibatches: int = doc(4, "Minibatches per buffer (rollout 128 / train batch 32).")


class PPOMax(PPOClip):
    name = "ppo_max"
    Config = PPOMaxConfig
    config: PPOMaxConfig

    def __init__(self, config: PPOMaxConfig, total_steps: int = 1) -> None:
        super().__init__(config, total_steps)
        self.moments, self.updates = RunningMoments(), 0
        self.ptx_texts: list[str] = []  # PPO-ptx: set in setup when ptx_coef > 0
        self.lm_loss: Callable[[list[str]], Tensor] | None = None
        self.rng = random.Random(0)  # draws the PPO-ptx texts; checkpointed with the state

    def setup(self, ctx: RunContext) -> None:
        c = self.config
        if c.ptx_coef > 0:
            texts = ctx.task.pretraining_texts() if ctx.task is not None else None
            if not texts:
                raise ConfigError("algorithm.ptx_coef > 0 needs a task with SFT texts "
                                  "(Task.pretraining_texts); set algorithm.ptx_coef=0.")
            self.ptx_texts, self.lm_loss = list(texts), ctx.lm_loss
            self.rng = random.Random(ctx.config.seed)

    def sequence_reward(self, batch: Experience) -> Tensor:
        if not self.config.reward_norm:
            return batch.scores if self.config.reward_clip is None else batch.scores.clamp(
                -self.config.reward_clip, self.config.reward_clip)
        self.moments.update(batch.scores)
        return normalize_reward(batch.scores, self.moments.mean, self.moments.std,
                                self.config.reward_clip)

    def prepare(self, batch: Experience) -> dict[str, float]:
        metrics = super().prepare(batch)
        return metrics | {"ppo_max/reward_running_mean": self.moments.mean,
                          "ppo_max/reward_running_std": self.moments.std}

    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Tensor]]:
        warming_up = self.updates < self.config.critic_warmup_steps
        if warming_up:  # the critic learns; the policy gets no gradient (and no Adam step)
            out = PolicyOutput(out.logprobs.detach(), out.entropy.detach(), out.values)
        loss, metrics = super().loss(batch, out)
        if self.lm_loss is not None and not warming_up:
            texts = self.rng.sample(self.ptx_texts, min(self.config.ptx_batch_size,
                                                        len(self.ptx_texts)))
            ptx = self.lm_loss(texts)
            loss = loss + self.config.ptx_coef * ptx
            metrics["ppo_max/ptx_loss"] = ptx.detach()
        return loss, metrics

    def after_update(self, batch: Experience, stats: dict[str, float]) -> dict[str, float]:
        self.updates += 1
        return {"ppo_max/critic_warmup": float(self.updates <= self.config.critic_warmup_steps)}

    def state_dict(self) -> dict[str, Any]:
        return {"moments": self.moments.state_dict(), "updates": self.updates,
                "ptx_rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.moments.load_state_dict(state["moments"])
        self.updates = int(state["updates"])
        if "ptx_rng" in state:  # checkpoints written before the PPO-ptx RNG was saved lack it
            self.rng.setstate(_as_rng_state(state["ptx_rng"]))


def _as_rng_state(state: Any) -> tuple[Any, ...]:
    """``random.Random.getstate()`` back from a checkpoint that may have turned its tuples into
    lists (JSON, some serializers)."""
    version, internal, gauss = state
    return int(version), tuple(int(x) for x in internal), gauss


@rlkit.hookimpl
def rlkit_register_algorithms(register: Callable[[type[Algorithm[Any]]], None]) -> None:
    register(PPOMax)
