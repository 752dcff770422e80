"""A2C: advantage actor-critic, one gradient step per batch, no ratio and no clipping.

    r_t  = −β·KL_t + [t = T]·R(x, y)                      (token-level KL-shaped reward)
    A_t  = GAE(γ, λ) from r_t and V(s_t);   R̂_t = A_t + V(s_t)
    loss = −E_t[A_t·log πθ(a_t|s_t)] + c_v·E_t[(R̂_t − V_φ(s_t))²] − c_e·E_t[H(πθ(·|s_t))]

The batch is sampled from the current policy and used for exactly one optimizer step
(``epochs = 1``, ``num_minibatches = 1``), so the policy gradient needs no importance ratio.
Token-level: A_t, V and H are per response token and the loss is a token mean.

Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement Learning" (arXiv 1602.01783),
synchronous variant; for language models as in RL4LMs (Ramamurthy et al. 2023, arXiv
2210.01241), which uses stable-baselines3's A2C: γ 0.99, λ 1.0, c_v 0.5, c_e 0, gradient clip
0.5, no advantage normalization; KL weight 0.1 from its IMDb configuration. RL4LMs optimizes
with RMSprop; rlkit's engine uses AdamW for every algorithm so that they compare alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

import rlkit
from rlkit import metrics as M
from rlkit.algorithm import Algorithm, CriticConfig, Experience, PolicyOutput, doc
from rlkit.errors import ConfigError
from rlkit.ops import gae, masked_mean, masked_whiten, tokens_reward


def a2c_loss(logprobs: Tensor, advantages: Tensor, values: Tensor, returns: Tensor,
             entropy: Tensor, mask: Tensor, vf_coef: float,
             ent_coef: float) -> tuple[Tensor, dict[str, Tensor]]:
    """−E_t[A_t·log π(a_t|s_t)] + c_v·E_t[(R̂_t − V_t)²] − c_e·E_t[H_t], token means over
    ``mask`` (Mnih et al. 2016, Algorithm S3; stable-baselines3 A2C.train)."""
    policy = -masked_mean(advantages * logprobs, mask)
    value = masked_mean((returns - values) ** 2, mask)
    ent = masked_mean(entropy, mask)
    loss = policy + vf_coef * value - ent_coef * ent
    return loss, {M.LOSS_POLICY: policy, M.LOSS_VALUE: value, "a2c/entropy": ent}


@dataclass
class A2CConfig(CriticConfig):
    kl_coef: float = doc(0.1, "β of the token-level KL penalty in the reward (RL4LMs IMDb: 0.1).")
    gamma: float = doc(0.99, "γ: discount over response tokens (SB3/RL4LMs: 0.99).",
                        ge=0, le=1)
    lam: float = doc(1.0, "λ of GAE (SB3 A2C: 1.0, i.e. Monte-Carlo returns minus V).",
                      ge=0, le=1)
    vf_coef: float = doc(0.5, "c_v: value-loss weight (SB3/RL4LMs: 0.5).", ge=0)
    ent_coef: float = doc(0.0, "c_e: entropy-bonus weight (SB3/RL4LMs: 0.0).", ge=0)
    normalize_advantage: bool = doc(False, "Whiten A_t over the batch (SB3 A2C: off).")
    max_grad_norm: float | None = doc(0.5, "Global grad-norm clip (SB3 A2C: 0.5).")
    epochs: int = doc(1, "One pass: A2C takes one gradient step per batch.")
    num_minibatches: int = doc(1, "One minibatch: the whole batch, one optimizer step.")


class A2C(Algorithm[A2CConfig]):
    name = "a2c"
    Config = A2CConfig
    needs_critic = True

    def __init__(self, config: A2CConfig, total_steps: int = 1) -> None:
        super().__init__(config, total_steps)
        if config.epochs != 1 or config.num_minibatches != 1:
            raise ConfigError(
                "a2c takes one on-policy gradient step per batch: algorithm.epochs and "
                "algorithm.num_minibatches must be 1 (for several, use ppo_clip, which has the "
                f"importance ratio); got {config.epochs} and {config.num_minibatches}.")

    def prepare(self, batch: Experience) -> dict[str, float]:
        c, mask = self.config, batch.response_mask
        rewards = tokens_reward(batch.scores, batch.kl, self.kl_coef, mask)
        advantages, batch.returns = gae(rewards, batch.require("values"), mask, c.gamma, c.lam)
        batch.advantages = masked_whiten(advantages, mask) if c.normalize_advantage else advantages
        return {"a2c/advantage_mean": float(masked_mean(advantages, mask))}

    def loss(self, batch: Experience, out: PolicyOutput) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        assert out.values is not None, "a2c declares needs_critic: the engine passes values"
        loss, metrics = a2c_loss(out.logprobs, batch.require("advantages"), out.values,
                                 batch.require("returns"), out.entropy, batch.response_mask,
                                 c.vf_coef, c.ent_coef)
        return loss, {k: v.detach() for k, v in metrics.items()}


@rlkit.hookimpl
def rlkit_register_algorithms(register: Callable[[type[Algorithm[Any]]], None]) -> None:
    register(A2C)
