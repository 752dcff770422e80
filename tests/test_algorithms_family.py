"""The 2026 comparison family's math on hand-worked numbers: GRPO (and its Dr. GRPO, DAPO and
GSPO options), RLOO, REINFORCE++, KTO, SimPO, ORPO, DPO's robust/BCO/length-normalised IPO
losses, the shared ops they are built from, and the six older plugins on the new contract.

Every expected value is worked by hand in the comments or written out as an independent formula
in the test; none is read back from the code under test. Masks carry padding (garbage values in
padded positions) wherever a loss aggregates over tokens.
"""

from __future__ import annotations

import json
import math
import random
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from rlkit import ops
from rlkit.algorithm import Experience, PolicyOutput
from rlkit.errors import ConfigError, RlkitError
from rlkit.testing import conformance_suite
from rlkit_plugins.dpo import DPO, DPOConfig, dpo_loss
from rlkit_plugins.grpo import GRPO, GRPOConfig, grpo_loss
from rlkit_plugins.kto import KTO, KTOConfig, kto_loss, kto_reference_point
from rlkit_plugins.orpo import ORPO, ORPOConfig, orpo_loss
from rlkit_plugins.ppo_clip import PPOClip, PPOClipConfig, ppo_clip_loss
from rlkit_plugins.ppo_kl import PPOKL, PPOKLConfig
from rlkit_plugins.ppo_max import PPOMax, PPOMaxConfig
from rlkit_plugins.reinforce import Reinforce, ReinforceConfig
from rlkit_plugins.reinforce_pp import ReinforcePP, ReinforcePPConfig, reinforce_pp_advantages
from rlkit_plugins.rloo import RLOO, RLOOConfig, rloo_advantages, rloo_loss
from rlkit_plugins.simpo import SimPO, SimPOConfig, simpo_loss

T = torch.tensor
NEW = ["grpo", "rloo", "reinforce_pp", "kto", "simpo", "orpo"]


def close(actual: Any, expected: Any, tol: float = 1e-6) -> None:
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64),
                               atol=tol, rtol=tol)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def experience(**fields: Any) -> Experience:
    """A prompt-less Experience with the given per-token tensors."""
    mask = fields.pop("response_mask")
    n, r = mask.shape
    base = dict(input_ids=torch.zeros(n, r + 1, dtype=torch.long),
                attention_mask=torch.ones(n, r + 1, dtype=torch.long), prompt_len=1,
                response_mask=mask, logprobs=torch.zeros(n, r), ref_logprobs=torch.zeros(n, r),
                kl=torch.zeros(n, r), scores=torch.zeros(n), group_ids=torch.arange(n))
    return Experience(**(base | fields))


# A short (1 token) and a long (3 tokens) response; padded positions hold garbage.
MASK = T([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
GARBAGE = T([[0.0, 7.0, -9.0], [0.0, 0.0, 0.0]])


# ---------------------------------------------------------------------------------------------
# rlkit.ops
# ---------------------------------------------------------------------------------------------


def test_leave_one_out_baseline_on_hand_values():
    # b_i = (Σ_j v_j − v_i)/(k − 1) = (9 − 1)/2, (9 − 2)/2, (9 − 6)/2
    close(ops.leave_one_out_baseline(T([1.0, 2.0, 6.0]), T([0, 0, 0])), [4.0, 3.5, 1.5])


def test_group_mean_and_std_on_hand_values():
    scores, groups = T([1.0, 2.0, 6.0, 0.0, 4.0]), T([3, 3, 3, 8, 8])
    close(ops.group_mean(scores, groups), [3, 3, 3, 2, 2])
    # group 3: deviations −2, −1, 3 ⇒ Σ² = 14, /(3 − 1) ⇒ √7;  group 8: ±2 ⇒ 8/1 ⇒ √8
    close(ops.group_std(scores, groups), [7**0.5] * 3 + [8**0.5] * 2)
    close(ops.group_std(scores, groups, unbiased=False), [(14 / 3) ** 0.5] * 3 + [2.0] * 2)
    close(ops.group_std(T([5.0]), T([0])), [0.0])  # a group of one: no spread


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_scale_modes(scale):
    scores, groups = T([1.0, 2.0, 6.0, 0.0, 4.0]), T([0, 0, 0, 1, 1])
    centred = [1 - 3, 2 - 3, 6 - 3, 0 - 2, 4 - 2]  # always the *group* mean
    # batch: mean 2.6, deviations −1.6 −0.6 3.4 −2.6 1.4, Σ² = 23.2, /4 = 5.8
    sigma = {"group": [7**0.5] * 3 + [8**0.5] * 2, "batch": [5.8**0.5] * 5, "none": None}[scale]
    expected = centred if sigma is None else [c / (s + 1e-4) for c, s in zip(centred, sigma)]
    close(ops.group_advantages(scores, groups, scale), expected)


def test_group_advantages_refuse_an_unknown_scale():
    with pytest.raises(ValueError, match="group, batch, none"):
        ops.group_advantages(T([1.0, 2.0]), T([0, 0]), "global")  # type: ignore[arg-type]


PER_TOKEN = T([[4.0, 100.0, 100.0], [1.0, 2.0, 3.0]])  # padding holds 100s


@pytest.mark.parametrize("mode, expected", [
    ("token_mean", (4 + 1 + 2 + 3) / 4),                 # Σ/Σ|y|
    ("seq_mean_token_mean", (4 / 1 + 6 / 3) / 2),        # mean of per-response means
    ("seq_mean_token_sum", (4 + 6) / 2),                 # mean of per-response sums
    ("seq_mean_token_sum_norm", (4 + 6) / (2 * 3)),      # Σ/(N·R) without a constant
])
def test_agg_loss_modes_on_hand_values_with_padding(mode, expected):
    close(ops.agg_loss(PER_TOKEN, MASK, mode), expected)


def test_agg_loss_constant_divisor_and_unknown_mode():
    close(ops.agg_loss(PER_TOKEN, MASK, "seq_mean_token_sum_norm", constant_len=5),
          10 / (2 * 5))
    with pytest.raises(ValueError, match="token_mean, seq_mean_token_mean"):
        ops.agg_loss(PER_TOKEN, MASK, "sequence_mean")


def test_sequence_logprobs_and_log_ratio_with_padding():
    logprobs = T([[-1.0, 50.0, 50.0], [-1.0, -2.0, -3.0]])
    close(ops.sequence_logprobs(logprobs, MASK), [-1.0, -6.0])
    close(ops.sequence_logprobs(logprobs, MASK, length_normalize=True), [-1.0, -2.0])
    old = T([[-1.5, 0.0, 0.0], [-1.3, -2.0, -2.0]])  # token log-ratios 0.5 | 0.3, 0, −1
    close(ops.sequence_log_ratio(logprobs, old, MASK, length_normalize=False), [0.5, -0.7])
    close(ops.sequence_log_ratio(logprobs, old, MASK, length_normalize=True),
          [0.5, -0.7 / 3])


def test_clipped_surrogate_asymmetric_on_hand_values():
    # ε_low 0.2, ε_high 0.28; ρ = 1.3, 1.3, 0.7, 0.7;  A = +1, −1, +1, −1
    # t0: −min(1.3, 1.28) = −1.28 (binds)    t1: −min(−1.3, −1.28) = 1.3
    # t2: −min(0.7, 0.8) = −0.7               t3: −min(−0.7, −0.8) = 0.8 (binds)
    ratio = T([1.3, 1.3, 0.7, 0.7], requires_grad=True)
    advantages = T([1.0, -1.0, 1.0, -1.0])
    loss = ops.clipped_surrogate(ratio, advantages, 0.2, 0.28)
    close(loss, [-1.28, 1.3, -0.7, 0.8])
    loss.sum().backward()
    close(ratio.grad, [0.0, 1.0, -1.0, 0.0])  # zero where the clipped term binds
    close(ops.clip_fraction(ratio.detach(), advantages, torch.ones(4), 0.2, 0.28), 0.5)
    close(ops.clipped_surrogate(T([1.3]), T([1.0]), 0.2), [-1.2])  # ε_high defaults to ε_low
    close(ops.clipped_surrogate(T([1.3]), T([1.0]), None), [-1.3])  # no clip


def test_clip_fraction_is_the_engines_definition():
    generator = torch.Generator().manual_seed(0)
    logprobs, old = torch.randn(4, 6, generator=generator), torch.randn(4, 6, generator=generator)
    advantages = torch.randn(4, 6, generator=generator)
    mask = (torch.rand(4, 6, generator=generator) > 0.3).float()
    engine = ops.ratio_stats(logprobs, old, mask, advantages, (0.2, 0.28))["policy/clipfrac"]
    ratio = torch.exp((logprobs - old) * mask)
    close(ops.clip_fraction(ratio, advantages, mask, 0.2, 0.28), engine)


def test_log1mexp_is_accurate_on_both_branches():
    for x in (-1e-6, -1e-3, -0.5, -0.7, -5.0, -40.0):
        close(ops.log1mexp(T([x], dtype=torch.float64)), [math.log(-math.expm1(x))], tol=1e-9)


def test_preference_pairs_split_by_score_in_group_order():
    values, scores = T([10.0, 20.0, 30.0, 40.0]), T([1.0, 0.0, 0.0, 1.0])
    chosen, rejected = ops.preference_pairs(values, scores, T([7, 7, 2, 2]))
    close(chosen, [40.0, 10.0])  # group 2 first (sorted ids), its chosen row is the 4th
    close(rejected, [30.0, 20.0])
    with pytest.raises(ValueError, match="split"):
        ops.preference_pairs(values[:3], scores[:3], T([7, 7, 2]))
    with pytest.raises(ValueError, match="tie"):
        ops.preference_pairs(values[:2], T([1.0, 1.0]), T([0, 0]))


def test_masked_whiten_population_std_option():
    x, mask = T([[1.0, 3.0, 99.0]]), T([[1.0, 1.0, 0.0]])
    close(ops.masked_whiten(x, mask, unbiased=False), [[-1.0, 1.0, 0.0]], tol=1e-6)
    close(ops.masked_whiten(x, mask), [[-(0.5**0.5), 0.5**0.5, 0.0]], tol=1e-6)


# ---------------------------------------------------------------------------------------------
# GRPO
# ---------------------------------------------------------------------------------------------


def grpo(**options: Any) -> GRPO:
    return GRPO(GRPOConfig(**options), total_steps=1)


def test_grpo_advantages_are_group_normalised_and_zero_for_a_tied_group():
    # group 0: scores 1, 0 ⇒ mean 0.5, unbiased std √0.5;  group 1 ties ⇒ Â = 0
    algo = grpo(samples_per_prompt=2)
    batch = experience(response_mask=T([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0]]),
                       scores=T([1.0, 0.0, 1.0, 1.0]), group_ids=T([0, 0, 1, 1]))
    algo.prepare(batch)
    a = 0.5 / (0.5**0.5 + 1e-4)
    close(batch.advantages, [[a, a], [-a, 0.0], [0.0, 0.0], [0.0, 0.0]])


def test_grpo_loss_on_hand_values_with_the_k3_term():
    # ρ = 1 (π = π_old); Â = +1, −1; ℓ = log π − log π_ref = [0.5] and [0, 1, −1]; β = 0.1
    # k3(ℓ) = e^{−ℓ} − 1 + ℓ:  k3(0.5) = e^{−.5} − .5,  k3(1) = e^{−1},  k3(−1) = e − 2
    logprobs = T([[-2.0, 3.0, 3.0], [-1.0, -1.0, -1.0]])
    ref = T([[-2.5, 0.0, 0.0], [-1.0, -2.0, 0.0]])
    advantages = T([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]) * MASK
    k3 = [[math.exp(-0.5) - 0.5], [0.0, math.exp(-1), math.e - 2]]
    beta = 0.1
    loss, metrics = grpo_loss(logprobs, logprobs, ref, advantages, MASK, 0.2, 0.2, beta,
                              "token", "seq_mean_token_mean")
    row0 = -1 + beta * k3[0][0]
    row1 = 1 + beta * sum(k3[1]) / 3
    close(loss, (row0 + row1) / 2)
    close(metrics["loss/policy"], (-1 + 1) / 2)
    close(metrics["grpo/kl"], (k3[0][0] + sum(k3[1])) / 4)


def _token_grads(loss_type: str, constant_len: int | None = None) -> torch.Tensor:
    """d loss / d log π for a 1-token and a 3-token response, both with Â = 1, β = 0."""
    algo = grpo(loss_type=loss_type, kl_coef=0.0, samples_per_prompt=2)
    if constant_len is not None:
        algo.setup(SimpleNamespace(config=SimpleNamespace(  # type: ignore[arg-type]
            rollout=SimpleNamespace(max_new_tokens=constant_len))))
    batch = experience(response_mask=MASK, advantages=MASK.clone(), ref_logprobs=None)
    logprobs = GARBAGE.clone().requires_grad_()
    batch.logprobs = GARBAGE.clone()
    loss, _ = algo.loss(batch, PolicyOutput(logprobs, torch.zeros(2, 3)))
    loss.backward()
    assert logprobs.grad is not None
    return logprobs.grad


def test_dr_grpo_gives_a_short_and_a_long_response_the_same_per_token_weight():
    # Σ_i Σ_t ℓ / (N·L), L = 8 (the generation limit): every valid token's weight −1/(2·8)
    grad = _token_grads("dr_grpo", constant_len=8)
    close(grad, MASK * (-1 / 16))
    # GRPO's per-response mean: the short response's token weighs 3× a long one's token
    close(_token_grads("grpo"), [[-1 / 2, 0, 0], [-1 / 6, -1 / 6, -1 / 6]])
    # DAPO's token mean over the batch: every token −1/4
    close(_token_grads("dapo"), MASK * (-1 / 4))


def test_dr_grpo_divides_by_the_generation_limit_and_does_not_scale_by_std():
    config = GRPOConfig(loss_type="dr_grpo")
    assert config.reward_scale() == "none"
    assert GRPO.spec(config).loss_aggregation == "seq_mean_token_sum_norm"
    algo = grpo(loss_type="dr_grpo", samples_per_prompt=2)
    batch = experience(response_mask=T([[1.0], [1.0]]), scores=T([3.0, 1.0]),
                       group_ids=T([0, 0]))
    algo.prepare(batch)
    close(batch.advantages, [[1.0], [-1.0]])  # R − mean, no division


def test_grpo_sequence_importance_sampling_gives_one_ratio_per_response():
    # token log-ratios 0.3, −0.3, 0 (mean 0 ⇒ s = 1) with Â = +1, ε = 0.2.
    # token IS: ρ_0 = e^{0.3} ≈ 1.35 > 1.2 is clipped (no gradient) while ρ_1 is not;
    # sequence IS: one ratio s = 1 for the response, unclipped, the same gradient on each token.
    old = T([[0.0, 0.0, 0.0]])
    new = T([[0.3, -0.3, 0.0]])
    mask, advantages = torch.ones(1, 3), torch.ones(1, 3)
    grads = {}
    for level in ("token", "sequence"):
        logprobs = new.clone().requires_grad_()
        loss, metrics = grpo_loss(logprobs, old, None, advantages, mask, 0.2, 0.2, 0.0, level,
                                  "seq_mean_token_mean")
        loss.backward()
        assert logprobs.grad is not None
        grads[level] = logprobs.grad
    # token: −(1/3)·ρ_t on unclipped tokens, 0 on the clipped one
    close(grads["token"], [[0.0, -math.exp(-0.3) / 3, -1 / 3]])
    # sequence: d/dlogπ_t of −s = −s/|y| = −1/3 on every token
    close(grads["sequence"], [[-1 / 3, -1 / 3, -1 / 3]])
    # and the whole response clips together once s leaves [1 − ε, 1 + ε]
    far = T([[0.9, 0.9, -0.3]])  # mean 0.5 ⇒ s = e^{0.5} ≈ 1.65
    logprobs = far.clone().requires_grad_()
    loss, metrics = grpo_loss(logprobs, old, None, advantages, mask, 0.2, 0.2, 0.0, "sequence",
                              "seq_mean_token_mean")
    loss.backward()
    close(loss, -1.2)
    close(logprobs.grad, torch.zeros(1, 3))
    close(metrics["grpo/seq_clipfrac"], 1.0)


def test_grpo_epsilon_high_lets_positive_advantages_raise_the_ratio_further():
    # ρ = 1.25 with Â = +1: clip-higher (ε_high 0.28) keeps the gradient; symmetric 0.2 clips it.
    # ρ = 0.75 with Â = −1: the low side clips at 0.8 either way.
    logprobs0 = T([[math.log(1.25), math.log(0.75)]])
    advantages, mask, old = T([[1.0, -1.0]]), torch.ones(1, 2), torch.zeros(1, 2)
    results = {}
    for eps_high in (0.28, 0.2):
        logprobs = logprobs0.clone().requires_grad_()
        loss, _ = grpo_loss(logprobs, old, None, advantages, mask, 0.2, eps_high, 0.0, "token",
                            "token_mean")
        loss.backward()
        assert logprobs.grad is not None
        results[eps_high] = (float(loss.detach()), logprobs.grad.clone())
    close(results[0.28][0], (-1.25 + 0.8) / 2)
    close(results[0.28][1], [[-1.25 / 2, 0.0]])
    close(results[0.2][0], (-1.2 + 0.8) / 2)
    close(results[0.2][1], [[0.0, 0.0]])


def test_grpo_spec_follows_the_options():
    assert GRPO.spec(GRPOConfig()).needs_reference
    assert not GRPO.spec(GRPOConfig(kl_coef=0.0)).needs_reference  # β = 0 drops the reference
    assert GRPO.spec(GRPOConfig()).loss_aggregation == "seq_mean_token_mean"
    assert GRPO.spec(GRPOConfig(loss_type="dapo")).loss_aggregation == "token_mean"
    assert GRPO.spec(GRPOConfig()).clip_range == (0.2, 0.2)
    assert GRPO.spec(GRPOConfig(loss_type="dapo")).clip_range == (0.2, 0.28)
    assert GRPO.spec(GRPOConfig(loss_type="dapo", epsilon_high=0.3)).clip_range == (0.2, 0.3)
    assert GRPOConfig(scale_rewards="batch", loss_type="dr_grpo").reward_scale() == "batch"
    assert GRPOConfig(epochs=3).num_iterations == 3  # μ is the passes over a batch


def test_grpo_with_beta_zero_trains_without_reference_log_probs():
    algo = grpo(kl_coef=0.0, samples_per_prompt=2)
    batch = experience(response_mask=torch.ones(2, 2), scores=T([1.0, 0.0]),
                       group_ids=T([0, 0]), ref_logprobs=None)
    algo.prepare(batch)
    loss, metrics = algo.loss(batch, PolicyOutput(torch.zeros(2, 2), torch.zeros(2, 2)))
    close(loss, 0.0, tol=1e-6)  # Â sums to 0 over the group, ρ = 1
    assert "grpo/kl" not in metrics
    with pytest.raises(ValueError, match="reference"):
        grpo_loss(torch.zeros(1, 1), torch.zeros(1, 1), None, torch.ones(1, 1),
                  torch.ones(1, 1), 0.2, 0.2, 0.04, "token", "token_mean")


def test_grpo_batch_scaling_keeps_the_group_mean():
    algo = grpo(scale_rewards="batch", samples_per_prompt=2)
    batch = experience(response_mask=torch.ones(4, 1), scores=T([1.0, 3.0, 10.0, 10.0]),
                       group_ids=T([0, 0, 1, 1]))
    algo.prepare(batch)
    std = float(T([1.0, 3.0, 10.0, 10.0]).std())  # unbiased, over the batch
    close(batch.advantages, [[-1 / (std + 1e-4)], [1 / (std + 1e-4)], [0.0], [0.0]])


def test_grpo_needs_two_samples_per_prompt():
    with pytest.raises(ConfigError, match="samples_per_prompt"):
        grpo(samples_per_prompt=1)


# ---------------------------------------------------------------------------------------------
# RLOO
# ---------------------------------------------------------------------------------------------


def test_rloo_advantages_use_the_kl_shaped_reward_and_the_others_mean():
    # R̃ = R − β·Σ_t KL_t with β = 0.5: KL sums 0.4, 0, 0.2 (padding ignored) ⇒ R̃ = 0.8, 2, 5.9
    # A = R̃ − mean of the other two: 0.8 − 3.95, 2 − 3.35, 5.9 − 1.4
    kl = T([[0.1, 0.3, 9.0], [0.0, 0.0, 9.0], [0.2, 9.0, 9.0]])
    mask = T([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    advantages = rloo_advantages(T([1.0, 2.0, 6.0]), kl, mask, T([4, 4, 4]), 0.5)
    close(advantages, [0.8 - 3.95, 2 - 3.35, 5.9 - 1.4])


def test_rloo_loss_treats_the_response_as_one_action():
    # ρ = 1: loss = −mean_i A_i; every token of response i gets −A_i/N (no 1/|y|)
    logprobs = GARBAGE.clone().requires_grad_()
    loss, _ = rloo_loss(logprobs, GARBAGE, T([2.0, -1.0]), MASK, 0.2)
    close(loss, -(2 - 1) / 2)
    loss.backward()
    close(logprobs.grad, T([[-1.0, 0, 0], [0.5, 0.5, 0.5]]))


def test_rloo_clips_the_sequence_ratio_when_the_policy_has_moved():
    # Σ_t log-ratio = log 1.5 for a response with A > 0: ρ = 1.5 > 1.2, clipped, no gradient
    old = torch.zeros(1, 3)
    logprobs = T([[math.log(1.5) / 2, math.log(1.5) / 2, 0.0]]).requires_grad_()
    loss, metrics = rloo_loss(logprobs, old, T([1.0]), torch.ones(1, 3), 0.2)
    loss.backward()
    close(loss, -1.2)
    close(logprobs.grad, torch.zeros(1, 3))
    close(metrics["rloo/seq_clipfrac"], 1.0)


def test_rloo_prepare_and_spec():
    algo = RLOO(RLOOConfig(kl_coef=0.0), total_steps=1)
    batch = experience(response_mask=torch.ones(3, 1), scores=T([1.0, 2.0, 6.0]),
                       group_ids=T([0, 0, 0]))
    algo.prepare(batch)
    close(batch.require("rloo_advantage"), [1 - 4, 2 - 3.5, 6 - 1.5])
    assert not RLOO.spec(RLOOConfig(kl_coef=0.0)).needs_reference
    assert RLOO.spec(RLOOConfig()).needs_reference
    assert RLOO.spec(RLOOConfig()).loss_aggregation == "seq_mean_token_sum"
    with pytest.raises(ConfigError, match="samples_per_prompt"):
        RLOO(RLOOConfig(samples_per_prompt=1), total_steps=1)


def test_rloo_normalised_advantages():
    algo = RLOO(RLOOConfig(kl_coef=0.0, normalize_advantages=True), total_steps=1)
    batch = experience(response_mask=torch.ones(3, 1), scores=T([1.0, 2.0, 6.0]),
                       group_ids=T([0, 0, 0]))
    algo.prepare(batch)
    raw = T([-3.0, -1.5, 4.5])  # mean 0, unbiased std √((9 + 2.25 + 20.25)/2)
    close(batch.require("rloo_advantage"), raw / ((31.5 / 2) ** 0.5 + 1e-4))


# ---------------------------------------------------------------------------------------------
# REINFORCE++
# ---------------------------------------------------------------------------------------------


def test_reinforce_pp_advantages_on_hand_values():
    # β = 1: r = [−0.1, −0.2 + 1] and [−0.3 + 0];  reward-to-go G = [0.7, 0.8] and [−0.3]
    # batch of 3 tokens: mean 0.4, deviations 0.3, 0.4, −0.7, population var 0.74/3
    mask = T([[1.0, 1.0], [1.0, 0.0]])
    kl = T([[0.1, 0.2], [0.3, 9.0]])
    advantages = reinforce_pp_advantages(T([1.0, 0.0]), kl, mask, T([0, 1]), 1.0, 1.0, "none")
    std = (0.74 / 3 + 1e-8) ** 0.5
    close(advantages, [[0.3 / std, 0.4 / std], [-0.7 / std, 0.0]], tol=1e-5)


def test_reinforce_pp_baseline_subtracts_the_group_mean_before_normalising():
    # R̃ = R − group mean = 0.5, −0.5, 0, 0;  population var 0.5/4 = 0.125
    mask = torch.ones(4, 1)
    advantages = reinforce_pp_advantages(T([1.0, 0.0, 3.0, 3.0]), torch.zeros(4, 1), mask,
                                         T([0, 0, 1, 1]), 0.01, 1.0, "group_mean")
    close(advantages, T([[0.5], [-0.5], [0.0], [0.0]]) / (0.125 + 1e-8) ** 0.5, tol=1e-5)


def test_reinforce_pp_loss_is_the_clipped_token_mean_plus_an_optional_kl_term():
    algo = ReinforcePP(ReinforcePPConfig(kl_placement="loss", kl_coef=0.5), total_steps=1)
    # response 0 (3 tokens): ρ = 1.5, 1, 1 with A = 1, 1, 0;  response 1 (1 token): ρ = 1, A = −2
    # token mean of −min(ρA, clip(ρ)A) over the 4 valid tokens: (−1.2 − 1 + 0 + 2)/4
    batch = experience(response_mask=MASK.flip(0), advantages=T([[1.0, 1.0, 0], [-2.0, 0, 0]]),
                       ref_logprobs=T([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    new = T([[math.log(1.5), 0.0, 0.0], [0.0, 5.0, 5.0]])  # padding holds garbage
    loss, metrics = algo.loss(batch, PolicyOutput(new, torch.zeros(2, 3)))
    policy = (-1.2 - 1.0 + 0.0 + 2.0) / 4
    close(metrics["loss/policy"], policy)
    # k2 = ½(log π − log π_ref)² on the valid tokens: ½·(log 1.5)², ½·1, 0, 0
    k2 = (0.5 * math.log(1.5) ** 2 + 0.5) / 4
    close(metrics["reinforce_pp/kl_loss"], k2)
    close(loss, policy + 0.5 * k2)


def test_reinforce_pp_baseline_needs_groups():
    with pytest.raises(ConfigError, match="samples_per_prompt"):
        ReinforcePP(ReinforcePPConfig(baseline="group_mean"), total_steps=1)
    assert not ReinforcePP.spec(ReinforcePPConfig(kl_coef=0.0)).needs_reference
    assert ReinforcePP.spec(ReinforcePPConfig()).clip_range == (0.2, 0.2)


# ---------------------------------------------------------------------------------------------
# KTO
# ---------------------------------------------------------------------------------------------


def test_kto_reference_point_is_the_clamped_detached_mean_of_mismatched_rows():
    logratios = T([1.0, -2.0, 0.5, 3.0], requires_grad=True)
    z0 = kto_reference_point(logratios, T([0.0, 0.0, 1.0, 1.0]))
    close(z0, 1.75)
    assert not z0.requires_grad
    close(kto_reference_point(T([5.0, -1.0, -3.0]), T([0.0, 1.0, 1.0])), 0.0)  # clamped ≥ 0
    close(kto_reference_point(T([5.0]), T([0.0])), 0.0)  # no mismatched rows


def test_kto_loss_on_hand_values_ignores_the_mismatched_rows():
    # β = 0.1, z₀ = 0.2, λ_D = 1, λ_U = 2; r = 1 (desirable), −0.5 (undesirable), 50 (anchor)
    # desirable: 1 − σ(0.1·(1 − 0.2));  undesirable: 2·(1 − σ(0.1·(0.2 + 0.5)))
    logratios = T([1.0, -0.5, 50.0], requires_grad=True)
    loss, metrics = kto_loss(logratios, T([1.0, 0.0, 0.0]), T([1.0, 1.0, 0.0]), T(0.2), 0.1,
                             1.0, 2.0)
    close(loss, ((1 - sigmoid(0.08)) + 2 * (1 - sigmoid(0.07))) / 2)
    close(metrics["rewards/chosen"], 0.1)
    close(metrics["rewards/rejected"], -0.05)
    close(metrics["rewards/margins"], 0.15)
    loss.backward()
    assert logratios.grad is not None and logratios.grad[2] == 0  # no gradient to the anchor


def test_kto_prepare_takes_z0_from_the_batch_and_the_loss_uses_it():
    # sequences: desirable (r = 1), undesirable (r = −1), two anchors (r = 0.25, 0.75 ⇒ z₀ 0.5)
    mask = T([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    ref = T([[-1.0, -1.0], [-1.0, 0.0], [-1.0, 0.0], [-1.0, -1.0]])
    logprobs = ref + T([[0.5, 0.5], [-1.0, 0.0], [0.25, 0.0], [0.5, 0.25]])
    batch = experience(response_mask=mask, logprobs=logprobs, ref_logprobs=ref,
                       scores=T([1.0, 0.0, 0.5, 0.5]),
                       extras={"kl_anchor": T([0.0, 0.0, 1.0, 1.0])})
    algo = KTO(KTOConfig(), total_steps=1)
    metrics = algo.prepare(batch)
    close(metrics["kto/kl"], 0.5)
    close(batch.require("kto_z0"), [0.5] * 4)
    loss, _ = algo.loss(batch.select(T([0, 1])), PolicyOutput(logprobs[:2], torch.zeros(2, 2)))
    close(loss, ((1 - sigmoid(0.1 * 0.5)) + (1 - sigmoid(0.1 * 1.5))) / 2)


def test_kto_declares_unpaired_data_with_mismatched_pairs():
    spec = KTO.spec(KTOConfig())
    assert spec.data_kind == "unpaired" and dict(spec.data_options) == {"mismatched_pairs": True}
    assert spec.needs_reference
    batch = experience(response_mask=torch.ones(1, 1))
    with pytest.raises(RuntimeError, match="kl_anchor"):
        KTO(KTOConfig(), total_steps=1).prepare(batch)


# ---------------------------------------------------------------------------------------------
# SimPO and ORPO
# ---------------------------------------------------------------------------------------------


def test_simpo_loss_on_hand_values_through_the_plugin():
    # chosen: 2 tokens, avg −2 (padding holds garbage);  rejected: 3 tokens, avg −4
    # β = 2, γ = 1: m = 2·(−2 + 4) − 1 = 3 ⇒ −log σ(3) = log(1 + e^{−3})
    mask = T([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    logprobs = T([[-1.0, -3.0, 42.0], [-2.0, -4.0, -6.0]])
    batch = experience(response_mask=mask, scores=T([1.0, 0.0]), group_ids=T([0, 0]),
                       ref_logprobs=None)
    loss, metrics = SimPO(SimPOConfig(), total_steps=1).loss(
        batch, PolicyOutput(logprobs, torch.zeros(2, 3)))
    close(loss, math.log(1 + math.exp(-3)))
    close(metrics["rewards/chosen"], -4.0)
    close(metrics["rewards/rejected"], -8.0)
    close(metrics["rewards/accuracies"], 1.0)
    smoothed, _ = simpo_loss(T([-2.0]), T([-4.0]), 2.0, 1.0, label_smoothing=0.25)
    close(smoothed, 0.75 * math.log(1 + math.exp(-3)) + 0.25 * math.log(1 + math.exp(3)))
    assert not SimPO.spec(SimPOConfig()).needs_reference


def test_orpo_loss_on_hand_values():
    # ā_w = −0.5, ā_l = −1.5;  log odds(ā) = ā − log(1 − e^ā);  λ = 0.1
    def log_odds(a: float) -> float:
        return a - math.log(1 - math.exp(a))

    chosen = T([-0.5], requires_grad=True)
    loss, metrics = orpo_loss(chosen, T([-1.5]), 0.1)
    ratio = log_odds(-0.5) - log_odds(-1.5)
    close(loss, 0.5 + 0.1 * math.log(1 + math.exp(-ratio)))
    close(metrics["orpo/nll"], 0.5)
    close(metrics["orpo/log_odds_ratio"], ratio)
    close(metrics["rewards/chosen"], -0.05)
    # at a certain chosen response (ā = 0) the loss stays finite
    loss0, _ = orpo_loss(T([0.0]), T([-1.0]), 0.1)
    assert torch.isfinite(loss0)


def test_orpo_plugin_trains_only_the_chosen_nll_and_uses_average_log_probs():
    mask = T([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    logprobs = T([[-0.25, -0.75, 9.0], [-1.0, -1.5, -2.0]]).requires_grad_()
    batch = experience(response_mask=mask, scores=T([1.0, 0.0]), group_ids=T([0, 0]),
                       ref_logprobs=None)
    loss, _ = ORPO(ORPOConfig(lam=0.0), total_steps=1).loss(
        batch, PolicyOutput(logprobs, torch.zeros(2, 3)))
    close(loss, 0.5)  # λ = 0: the chosen response's mean NLL alone
    loss.backward()
    assert logprobs.grad is not None
    close(logprobs.grad, [[-0.5, -0.5, 0.0], [0.0, 0.0, 0.0]])
    assert not ORPO.spec(ORPOConfig()).needs_reference


@pytest.mark.parametrize("algo", [SimPO(SimPOConfig(), 1), ORPO(ORPOConfig(), 1)])
def test_pair_losses_refuse_a_split_pair(algo):
    batch = experience(response_mask=torch.ones(3, 1), scores=T([1.0, 0.0, 1.0]),
                       group_ids=T([0, 0, 1]))
    with pytest.raises(RlkitError, match="grad_accum_steps"):
        algo.loss(batch, PolicyOutput(torch.full((3, 1), -1.0), torch.zeros(3, 1)))


# ---------------------------------------------------------------------------------------------
# DPO additions
# ---------------------------------------------------------------------------------------------

PAIR = (T([-1.0]), T([-3.0]), T([-2.0]), T([-2.5]))  # log-ratios +1 and −0.5 ⇒ h = 1.5


def test_robust_dpo_on_hand_values():
    # ε = 0.25, β = 0.1: (−0.75·log σ(0.15) + 0.25·log σ(−0.15)) / 0.5
    loss, _ = dpo_loss(*PAIR, beta=0.1, loss_type="robust", label_smoothing=0.25)
    expected = (0.75 * math.log(1 + math.exp(-0.15)) - 0.25 * math.log(1 + math.exp(0.15))) / 0.5
    close(loss, expected)
    plain, _ = dpo_loss(*PAIR, beta=0.1)
    robust0, _ = dpo_loss(*PAIR, beta=0.1, loss_type="robust")
    assert torch.equal(plain, robust0)  # ε = 0 is DPO


def test_bco_pair_on_hand_values():
    # β·ℓ_w = 0.1, β·ℓ_l = −0.05, δ = 0.05: −log σ(0.05) − log σ(0.1)
    loss, _ = dpo_loss(*PAIR, beta=0.1, loss_type="bco_pair", delta=0.05)
    close(loss, math.log(1 + math.exp(-0.05)) + math.log(1 + math.exp(-0.1)))


def test_ipo_length_normalised_on_hand_values():
    # per-token log-ratios: 1/2 − (−0.5)/4 = 0.625;  (0.625 − 1/(2·0.1))²
    loss, _ = dpo_loss(*PAIR, beta=0.1, loss_type="ipo", lengths=(T([2.0]), T([4.0])))
    close(loss, (0.625 - 5) ** 2)
    summed, _ = dpo_loss(*PAIR, beta=0.1, loss_type="ipo")
    close(summed, (1.5 - 5) ** 2)  # today's form, unchanged


def test_dpo_plugin_normalises_ipo_by_each_responses_length():
    mask = T([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    ref = torch.zeros(2, 4)
    logprobs = T([[0.5, 0.5, 8.0, 8.0], [-0.125, -0.125, -0.125, -0.125]])  # Σ = 1, −0.5
    batch = experience(response_mask=mask, scores=T([1.0, 0.0]), group_ids=T([0, 0]),
                       ref_logprobs=ref)
    algo = DPO(DPOConfig(loss_type="ipo", ipo_length_normalize=True))
    algo.prepare(batch)
    loss, _ = algo.loss(batch, PolicyOutput(logprobs, torch.zeros(2, 4)))
    close(loss, (0.625 - 5) ** 2)
    assert DPO.spec(algo.config).loss_aggregation == "seq_mean_token_mean"


def test_dpo_bco_shift_is_the_running_mean_implicit_reward():
    batch = experience(response_mask=torch.ones(2, 1), scores=T([1.0, 0.0]), group_ids=T([0, 0]),
                       logprobs=T([[1.0], [-3.0]]), ref_logprobs=torch.zeros(2, 1))
    algo = DPO(DPOConfig(loss_type="bco_pair"))
    metrics = algo.prepare(batch)
    close(metrics["dpo/bco_delta"], 0.1 * (1 - 3) / 2)  # mean of β·ℓ over both rows
    algo.prepare(experience(response_mask=torch.ones(2, 1), scores=T([1.0, 0.0]),
                            group_ids=T([0, 0]), logprobs=T([[3.0], [3.0]]),
                            ref_logprobs=torch.zeros(2, 1)))
    close(algo.reward_moments.mean, (0.1 - 0.3 + 0.3 + 0.3) / 4)
    restored = DPO(DPOConfig(loss_type="bco_pair"))
    restored.load_state_dict(json.loads(json.dumps(algo.state_dict())))
    assert restored.reward_moments.mean == algo.reward_moments.mean


def test_dpo_online_uses_judged_pairs_and_drops_flagged_ties():
    assert DPO.spec(DPOConfig()).data_kind == "preferences"
    assert DPO.spec(DPOConfig(mode="online")).data_kind == "judged_pairs"
    algo = DPO(DPOConfig(mode="online"))
    batch = experience(response_mask=torch.ones(4, 1), scores=T([1.0, 0.0, 1.0, 0.0]),
                       group_ids=T([0, 0, 1, 1]), extras={"pair_valid": T([1.0, 1.0, 0.0, 0.0])})
    metrics = algo.prepare(batch)
    assert batch.extras["dpo_role"].tolist() == [1, -1, 0, 0]
    close(metrics["dpo/pair_fraction"], 0.5)


def test_dpo_option_checks():
    with pytest.raises(ConfigError, match="label_smoothing"):
        DPO(DPOConfig(loss_type="robust", label_smoothing=0.5))
    with pytest.raises(ConfigError, match="ipo_length_normalize"):
        DPO(DPOConfig(ipo_length_normalize=True))
    with pytest.raises(ValueError, match="sigmoid, ipo, robust, bco_pair"):
        dpo_loss(*PAIR, beta=0.1, loss_type="hinge")


# ---------------------------------------------------------------------------------------------
# REINFORCE's moving average, and the older plugins on the new contract
# ---------------------------------------------------------------------------------------------


def test_reinforce_moving_average_baseline_over_two_batches():
    # batch 1: mean R̃ 2, no baseline yet ⇒ A = R̃;  EMA starts at 2
    # batch 2: mean 5, baseline 2 ⇒ A = 4 − 2, 6 − 2;  EMA = 0.9·2 + 0.1·5 = 2.3
    algo = Reinforce(ReinforceConfig(baseline="moving_average", baseline_decay=0.9))
    first = experience(response_mask=torch.ones(2, 1), scores=T([1.0, 3.0]))
    algo.prepare(first)
    close(first.advantages, [[1.0], [3.0]])
    second = experience(response_mask=torch.ones(2, 1), scores=T([4.0, 6.0]))
    metrics = algo.prepare(second)
    close(second.advantages, [[2.0], [4.0]])
    close(metrics["reinforce/baseline"], 2.0)
    close(algo.state_dict()["running_baseline"], 2.3)


def test_the_old_plugins_declare_the_new_contract():
    assert Reinforce.spec(ReinforceConfig()).loss_aggregation == "seq_mean_token_sum"
    assert DPO.spec(DPOConfig()).loss_aggregation == "seq_mean_token_sum"
    assert PPOClip.spec(PPOClipConfig()).clip_range == (0.2, 0.2)
    assert PPOClip.spec(PPOClipConfig(critic_init="reward")).critic_init == "reward"
    assert PPOKL.spec(PPOKLConfig()).clip_range is None  # no clip, no clip fraction
    assert PPOKL.spec(PPOKLConfig(clip_eps=0.1)).clip_range == (0.1, 0.1)
    assert PPOMax.spec(PPOMaxConfig()).clip_range == (0.2, 0.2)
    assert PPOMax.spec(PPOMaxConfig()).critic_init == "auto"


def test_ppo_clip_loss_is_unchanged_and_leaves_the_clip_fraction_to_the_engine():
    generator = torch.Generator().manual_seed(1)
    logprobs, old = torch.randn(3, 5, generator=generator), torch.randn(3, 5, generator=generator)
    advantages = torch.randn(3, 5, generator=generator)
    mask = (torch.rand(3, 5, generator=generator) > 0.3).float()
    loss, metrics = ppo_clip_loss(logprobs, old, advantages, mask, 0.2)
    # the formula as it stood before the move to rlkit.ops, bit for bit
    ratio = torch.exp(logprobs - old)
    unclipped, clipped = -advantages * ratio, -advantages * ratio.clamp(0.8, 1.2)
    assert torch.equal(loss, ops.masked_mean(torch.maximum(unclipped, clipped), mask))
    assert torch.equal(metrics["policy/clipfrac"],
                       ops.masked_mean((clipped > unclipped).float(), mask))
    plain, plain_metrics = ppo_clip_loss(logprobs, old, advantages, mask, None)
    assert torch.equal(plain, ops.masked_mean(unclipped, mask)) and plain_metrics == {}
    # a run logs the engine's measurement only: the plugin's loss does not emit its own
    algo = PPOClip(PPOClipConfig(whiten_advantages="none"))
    batch = experience(response_mask=mask, logprobs=old, advantages=advantages,
                       values=torch.zeros(3, 5), returns=torch.zeros(3, 5))
    _, emitted = algo.loss(batch, PolicyOutput(logprobs, torch.zeros(3, 5), torch.zeros(3, 5)))
    assert not {"policy/clipfrac", "policy/ratio_mean", "policy/approx_kl"} & set(emitted)


def test_ppo_kl_measures_d_with_the_context_policy_logprobs():
    algo = PPOKL(PPOKLConfig(kl_target=0.01, beta=1.0))
    updated = T([[math.log(2.0), 0.0]])

    class Ctx:
        def policy_logprobs(self, batch: Experience, *, grad: bool = False) -> torch.Tensor:
            return updated * batch.response_mask

    algo.setup(Ctx())  # type: ignore[arg-type]
    batch = experience(response_mask=T([[1.0, 0.0]]))
    metrics = algo.after_update(batch, {})
    # k3 of KL(π_old‖πθ) with log πθ − log π_old = log 2: 2 − 1 − log 2 on the one valid token
    close(metrics["ppo_kl/kl_after_update"], 1 - math.log(2))
    assert metrics["ppo_kl/beta"] == 2.0  # d > 1.5·d_targ


def test_ppo_max_checkpoints_the_ptx_rng_through_json():
    algo = PPOMax(PPOMaxConfig())
    algo.rng = random.Random(7)
    algo.rng.random()
    state = json.loads(json.dumps(algo.state_dict()))  # tuples come back as lists
    expected = [algo.rng.random() for _ in range(3)]
    restored = PPOMax(PPOMaxConfig())
    restored.load_state_dict(state)
    assert [restored.rng.random() for _ in range(3)] == expected


# ---------------------------------------------------------------------------------------------
# registration and docs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
def test_new_algorithms_register_with_documented_configs(name):
    from rlkit.testing import check_config_documented, check_registers

    check_registers(name)
    check_config_documented(name)


@pytest.mark.parametrize("name", NEW + ["dpo"])
def test_docs_list_every_default_the_new_plugins_set(name):
    """docs/algorithms.md shows each field a plugin adds or re-defaults, with its default."""
    from pathlib import Path

    from rlkit.algorithm import config_docs
    from rlkit.plugins import get_plugin_manager

    text = (Path(__file__).resolve().parent.parent / "docs" / "algorithms.md").read_text()
    section = text.split(f"## `{name}`")[1].split("\n## ")[0]
    config = get_plugin_manager().algorithm(name).Config
    parent = config_docs(config.__mro__[1])
    for field, (default, doc) in config_docs(config).items():
        if parent.get(field) != (default, doc):
            assert f"| `{field}` | `{default!r}` | {doc} |" in section, (name, field)


@pytest.mark.parametrize("algorithm", ["grpo", "rloo", "reinforce_pp"])
def test_with_several_passes_the_ratio_is_one_first_then_moves(tmp_path, algorithm):
    """μ = 2 (GRPO's num_iterations, ``epochs``): the first minibatch sees ρ = 1 exactly, the
    second pass a policy that has moved, so the clip has something to act on."""
    from conftest import make_run, tiny_config

    config = tiny_config(**{"algorithm.name": algorithm, "algorithm.epochs": 2,
                            "algorithm.num_minibatches": 1, "algorithm.samples_per_prompt": 2,
                            "train.steps": 1, "train.threads": 1})
    config["algorithm"].pop("baseline")
    run = make_run(tmp_path, config)
    seen: list[torch.Tensor] = []
    loss = run.algorithm.loss

    def spy(batch: Experience, out: PolicyOutput) -> Any:
        seen.append(torch.exp(out.logprobs.detach() - batch.logprobs)[batch.response_mask.bool()])
        return loss(batch, out)

    run.algorithm.loss = spy  # type: ignore[method-assign]
    run.train()
    assert len(seen) == 2
    assert torch.equal(seen[0], torch.ones_like(seen[0]))
    assert float((seen[1] - 1).abs().max()) > 1e-4


# ---------------------------------------------------------------------------------------------
# conformance: each new algorithm in tiny real runs on the toy task (rlkit.testing)
# ---------------------------------------------------------------------------------------------

test_conformance_grpo = conformance_suite("grpo")
test_conformance_rloo = conformance_suite("rloo")
test_conformance_reinforce_pp = conformance_suite("reinforce_pp")
test_conformance_kto = conformance_suite("kto")
test_conformance_simpo = conformance_suite("simpo")
test_conformance_orpo = conformance_suite("orpo")
