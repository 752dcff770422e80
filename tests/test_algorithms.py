"""The five algorithm plugins' math on hand-worked numbers, and their behaviour in a real run.

Every expected value below is worked by hand (shown in the comments) or by an independent
formula written out in the test; none is read back from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_run, read_rows, tiny_config

from rlkit.algorithm import Experience, PolicyOutput
from rlkit.errors import ConfigError
from rlkit_plugins.a2c import A2C, A2CConfig, a2c_loss
from rlkit_plugins.dpo import DPO, DPOConfig, dpo_loss
from rlkit_plugins.ppo_clip import (
    PPOClip,
    PPOClipConfig,
    clipped_value_loss,
    kl_loss,
    ppo_clip_loss,
)
from rlkit_plugins.ppo_kl import PPOKL, PPOKLConfig, adapt_beta, ppo_kl_loss, ziegler_kl_coef
from rlkit_plugins.ppo_max import PPOMax, PPOMaxConfig, normalize_reward

T = torch.tensor


def run_config(algorithm: str, **overrides) -> dict:
    """``tiny_config`` for ``algorithm`` (its defaults; REINFORCE's baseline key dropped)."""
    # one thread: two threads per process crawl on a shared 2-core machine
    config = tiny_config(**{"algorithm.name": algorithm, "train.threads": 1, **overrides})
    config["algorithm"].pop("baseline")
    return config


def close(actual, expected, tol: float = 1e-6) -> None:
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float32),
                               torch.as_tensor(expected, dtype=torch.float32),
                               atol=tol, rtol=tol)


def experience(**fields) -> Experience:
    """A one-or-few-sequence Experience with the given per-token tensors (prompt-less)."""
    mask = fields.pop("response_mask")
    n, r = mask.shape
    base = dict(input_ids=torch.zeros(n, r + 1, dtype=torch.long),
                attention_mask=torch.ones(n, r + 1, dtype=torch.long), prompt_len=1,
                response_mask=mask, logprobs=torch.zeros(n, r), ref_logprobs=torch.zeros(n, r),
                kl=torch.zeros(n, r), scores=torch.zeros(n),
                group_ids=torch.arange(n))
    return Experience(**(base | fields))


# ---------------------------------------------------------------------------------------------
# PPO-clip
# ---------------------------------------------------------------------------------------------


def test_clipped_surrogate_on_hand_values():
    # ρ = 1.5, 0.5, 1.1, 0.9 (last masked);  A = 1, 1, −1, −1;  ε = 0.2
    # t0: max(−1.5, −1.2) = −1.2 (clip binds)   t1: max(−0.5, −0.8) = −0.5   t2: max(1.1, 1.1)
    ratio = T([[1.5, 0.5, 1.1, 0.9]])
    logprobs = ratio.log().requires_grad_()
    advantages, mask = T([[1.0, 1.0, -1.0, -1.0]]), T([[1.0, 1.0, 1.0, 0.0]])
    loss, metrics = ppo_clip_loss(logprobs, torch.zeros(1, 4), advantages, mask, clip_eps=0.2)
    close(loss, (-1.2 - 0.5 + 1.1) / 3)
    close(metrics["policy/clipfrac"], 1 / 3)
    loss.backward()
    # ∂/∂logπ of −ρA/3 is −ρA/3 where the unclipped term is taken; 0 where the clip binds
    close(logprobs.grad, T([[0.0, -0.5 / 3, 1.1 / 3, 0.0]]))


def test_clipped_surrogate_gradient_is_zero_on_the_binding_side_only():
    # A > 0, ρ > 1+ε and A < 0, ρ < 1−ε are clipped (no gradient); A < 0, ρ > 1+ε and
    # A > 0, ρ < 1−ε are not (the pessimistic bound keeps the unclipped term)
    ratio = T([[1.5, 0.5, 1.5, 0.5]])
    advantages = T([[2.0, -2.0, -2.0, 2.0]])
    logprobs = ratio.log().requires_grad_()
    loss, metrics = ppo_clip_loss(logprobs, torch.zeros(1, 4), advantages, torch.ones(1, 4), 0.2)
    loss.backward()
    close(logprobs.grad, T([[0.0, 0.0, 1.5 * 2 / 4, -0.5 * 2 / 4]]))
    close(metrics["policy/clipfrac"], 0.5)
    close(loss, (-2 * 1.2 + 2 * 0.8 + 2 * 1.5 - 2 * 0.5) / 4)


def test_unclipped_surrogate_when_clip_is_off():
    ratio, advantages = T([[2.0, 0.5]]), T([[1.0, -1.0]])
    loss, metrics = ppo_clip_loss(ratio.log(), torch.zeros(1, 2), advantages, torch.ones(1, 2),
                                  clip_eps=None)
    close(loss, -(2.0 * 1 + 0.5 * -1) / 2)
    assert metrics == {}


def test_clipped_value_loss_on_hand_values():
    # V = 1.0, 0.0, 0.6;  V_old = 0.5;  R̂ = 2, 0, 0;  ε_v = 0.2
    # t0: max((1−2)², (0.7−2)²) = 1.69 (clipped)  t1: max(0, (0.3−0)²) = 0.09 (clipped)
    # t2: V within V_old ± 0.2: (0.6)² = 0.36 both ways (not counted as clipped)
    values, old = T([[1.0, 0.0, 0.6]]), T([[0.5, 0.5, 0.5]])
    returns, mask = T([[2.0, 0.0, 0.0]]), torch.ones(1, 3)
    loss, metrics = clipped_value_loss(values, old, returns, mask, clip=0.2)
    close(loss, 0.5 * (1.69 + 0.09 + 0.36) / 3)
    close(metrics["value/clipfrac"], 2 / 3)
    plain, _ = clipped_value_loss(values, old, returns, mask, clip=None)
    close(plain, 0.5 * (1.0 + 0.0 + 0.36) / 3)


def test_kl_loss_k3_on_hand_values():
    # ℓ = log π − log π_ref = 1 and −1: k3 = e^{−ℓ} − 1 + ℓ
    value = kl_loss(T([[-1.0, -2.0]]), T([[-2.0, -1.0]]), torch.ones(1, 2), "k3")
    close(value, ((math.exp(-1) - 1 + 1) + (math.exp(1) - 1 - 1)) / 2)


def _three_token_batch() -> Experience:
    return experience(response_mask=torch.ones(1, 3), scores=T([1.0]),
                      kl=T([[0.1, 0.2, 0.3]]), values=T([[0.5, 0.2, 0.1]]))


def test_ppo_clip_prepare_shapes_the_kl_into_the_reward_before_gae():
    # r = [−0.05, −0.1, −0.15 + 1] with β = 0.5;  γ = 1, λ = 0.95
    # δ2 = 0.85 − 0.1 = 0.75;  δ1 = −0.1 + 0.1 − 0.2 = −0.2;  δ0 = −0.05 + 0.2 − 0.5 = −0.35
    # A2 = 0.75;  A1 = −0.2 + 0.95·0.75 = 0.5125;  A0 = −0.35 + 0.95·0.5125 = 0.136875
    algo = PPOClip(PPOClipConfig(kl_coef=0.5, whiten_advantages="none"))
    batch = _three_token_batch()
    algo.prepare(batch)
    close(batch.advantages, T([[0.136875, 0.5125, 0.75]]))
    close(batch.returns, T([[0.636875, 0.7125, 0.85]]))


def test_ppo_clip_kl_in_the_loss_leaves_the_reward_alone_and_adds_beta_kl():
    # r = [0, 0, 1]: δ2 = 0.9, δ1 = −0.1, δ0 = −0.3;  A1 = −0.1 + 0.855;  A0 = −0.3 + 0.95·A1
    config = PPOClipConfig(kl_coef=0.5, whiten_advantages="none", kl_placement="loss",
                           vf_coef=0.0)
    algo, batch = PPOClip(config), _three_token_batch()
    algo.prepare(batch)
    close(batch.advantages, T([[-0.3 + 0.95 * 0.755, 0.755, 0.9]]))
    new = T([[0.0, 0.0, 0.0]])
    batch.ref_logprobs = T([[-1.0, 0.0, 1.0]])  # ℓ = 1, 0, −1
    out = PolicyOutput(logprobs=new, entropy=torch.zeros(1, 3), values=batch.values)
    loss, metrics = algo.loss(batch, out)
    k3 = ((math.exp(-1) - 1 + 1) + 0 + (math.exp(1) - 1 - 1)) / 3
    close(metrics["ppo_clip/kl_loss"], k3)
    pg = -float(batch.advantages.mean())  # ρ = 1 everywhere
    close(loss, pg + 0.5 * k3, tol=1e-5)


def test_ppo_clip_batch_whitening_gives_zero_mean_unit_variance_advantages():
    algo = PPOClip(PPOClipConfig())
    mask = T([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    batch = experience(response_mask=mask, scores=T([1.0, -2.0]), values=torch.zeros(2, 4))
    algo.prepare(batch)
    adv = batch.advantages[mask.bool()].double()
    close(adv.mean(), 0.0, tol=1e-6)
    close(adv.std(), 1.0, tol=1e-4)  # unbiased, like rlkit.ops.masked_var
    assert (batch.advantages[~mask.bool()] == 0).all()


def _ratios_seen(tmp_path, algorithm: str, **options):
    config = run_config(algorithm, **{"train.steps": 1, "algorithm.samples_per_prompt": 2,
                                      "rollout.batch_size": 4,
                                      **{f"algorithm.{k}": v for k, v in options.items()}})
    run = make_run(tmp_path, config, name=algorithm)
    seen = []
    loss = run.algorithm.loss

    def spy(batch, out):
        ratio = torch.exp(out.logprobs.detach() - batch.logprobs)[batch.response_mask.bool()]
        seen.append(ratio)
        return loss(batch, out)

    run.algorithm.loss = spy
    run.train()
    return seen


@pytest.mark.parametrize("algorithm", ["ppo_clip", "ppo_kl", "ppo_max"])
def test_ratio_is_one_on_the_first_minibatch_only(tmp_path, algorithm):
    seen = _ratios_seen(tmp_path, algorithm, epochs=2, num_minibatches=2)
    assert len(seen) == 4
    assert torch.equal(seen[0], torch.ones_like(seen[0]))  # exactly: π_θ is still π_old
    assert max(float((r - 1).abs().max()) for r in seen[1:]) > 1e-4  # later ones moved


# ---------------------------------------------------------------------------------------------
# PPO-KL
# ---------------------------------------------------------------------------------------------


def test_ppo_kl_loss_on_hand_values():
    # ρ = 2, 0.5;  A = 1, −1:  −E[ρA] = −(2 − 0.5)/2 = −0.75
    # KL_t = ρ − 1 − log ρ = 1 − ln 2 and −0.5 + ln 2: mean 0.25;  β = 0.5 ⇒ −0.75 + 0.125
    ratio = T([[2.0, 0.5]])
    loss, metrics = ppo_kl_loss(ratio.log(), torch.zeros(1, 2), T([[1.0, -1.0]]),
                                torch.ones(1, 2), beta=0.5)
    close(metrics["ppo_kl/kl_old"], 0.25)
    close(loss, -0.625)


def test_ppo_kl_with_a_clip_adds_the_penalty_to_the_clipped_surrogate():
    # ρ = 1.5, A = 1, ε = 0.2: clipped surrogate −1.2;  KL = 1.5 − 1 − ln 1.5;  β = 0.5
    algo = PPOKL(PPOKLConfig(clip_eps=0.2, beta=0.5))
    batch = experience(response_mask=torch.ones(1, 1))
    out = PolicyOutput(T([[math.log(1.5)]]), torch.zeros(1, 1))
    loss, _ = algo.policy_loss(batch, out, advantages=T([[1.0]]))
    close(loss, -1.2 + 0.5 * (0.5 - math.log(1.5)))


def test_ppo_kl_penalty_gradient_matches_the_true_kl_gradient_in_expectation():
    # Exact check on a 3-token categorical: E_{a∼π_old}[∇ k3] = ∇ KL(π_old ‖ πθ)
    logits = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    old = torch.log_softmax(torch.tensor([0.0, 0.1, -0.4]), -1)
    new = torch.log_softmax(logits, -1)
    k3 = (torch.exp(new - old) - 1 - (new - old))  # per action, sampled from π_old
    (old.exp() * k3).sum().backward()
    estimated = logits.grad.clone()
    logits.grad = None
    (old.exp() * (old - torch.log_softmax(logits, -1))).sum().backward()
    close(estimated, logits.grad)


def test_beta_halves_below_and_doubles_above_the_target():
    assert adapt_beta(1.0, d=0.001, d_targ=0.01) == 0.5  # d < d_targ / 1.5
    assert adapt_beta(1.0, d=0.1, d_targ=0.01) == 2.0  # d > 1.5 · d_targ
    assert adapt_beta(1.0, d=0.01, d_targ=0.01) == 1.0
    assert adapt_beta(1.0, d=0.0149, d_targ=0.01) == 1.0


def test_ziegler_controller_on_hand_values():
    # KL 9 vs target 6: e = clip(0.5, ±0.2) = 0.2;  β·(1 + 0.2·8/10000)
    close(ziegler_kl_coef(0.1, 9.0, 6.0, n=8, horizon=10000), 0.1 * (1 + 0.2 * 8 / 10000))
    close(ziegler_kl_coef(0.1, 5.7, 6.0, n=8, horizon=8), 0.1 * (1 - 0.05))


@pytest.mark.parametrize("target, moves", [(1e-9, 2.0), (1e3, 0.5)])
def test_ppo_kl_beta_moves_the_right_way_in_a_run(tmp_path, target, moves):
    config = run_config("ppo_kl", **{"algorithm.kl_target": target, "algorithm.beta": 1.0,
                                     "train.steps": 2})
    run = make_run(tmp_path, config)
    run.train()
    rows = [r for r in read_rows(run.run_dir / "metrics.jsonl") if r["train/step"] > 0]
    assert [r["ppo_kl/beta"] for r in rows] == [moves, moves**2]
    assert all(r["ppo_kl/kl_after_update"] > 0 for r in rows)


def test_ppo_kl_ziegler_option_adapts_the_reference_kl_coef():
    algo = PPOKL(PPOKLConfig(kl_coef=0.1, adaptive_beta=False, adaptive_kl_coef=True,
                             kl_ref_target=1.0, kl_horizon=4))
    batch = experience(response_mask=torch.ones(2, 2), kl=T([[1.0, 1.0], [2.0, 2.0]]))
    metrics = algo.after_update(batch, {"ppo_kl/kl_old": 0.0})  # KL_ref = 3 ⇒ e = +0.2
    close(algo.kl_coef, 0.1 * (1 + 0.2 * 2 / 4))
    assert metrics["ppo_kl/beta"] == 1.0  # β of the π_old penalty left alone


# ---------------------------------------------------------------------------------------------
# PPO-max
# ---------------------------------------------------------------------------------------------


def test_ppo_max_running_normalizer_matches_numpy_on_a_stream():
    rng = np.random.default_rng(0)
    algo = PPOMax(PPOMaxConfig(reward_clip=None))
    seen: list[float] = []
    for size in (5, 1, 12, 3, 30):
        chunk = rng.normal(3.0, 2.5, size).astype(np.float32)  # scores are float32
        seen.extend(chunk.astype(np.float64))
        out = algo.sequence_reward(experience(response_mask=torch.ones(size, 1),
                                              scores=torch.from_numpy(chunk)))
        mean, std = np.mean(seen), np.std(seen)  # population std, like ops.RunningMoments
        assert algo.moments.mean == pytest.approx(mean, rel=1e-9)
        assert algo.moments.std == pytest.approx(std, rel=1e-9)
        np.testing.assert_allclose(out.numpy(), (chunk - mean) / std, rtol=1e-5, atol=1e-5)


def test_ppo_max_reward_clip_on_hand_values():
    # (R − 1)/2 = −2, −0.25, 0.5, 3  ⇒  clipped to ±0.8
    out = normalize_reward(T([-3.0, 0.5, 2.0, 7.0]), mean=1.0, std=2.0, clip=0.8)
    close(out, T([-0.8, -0.25, 0.5, 0.8]))


def test_ppo_max_defaults_are_the_paper_values():
    c = PPOMaxConfig()
    assert (c.reward_norm, c.reward_clip, c.kl_coef, c.kl_placement, c.lam) == (
        True, 0.8, 0.05, "reward", 0.9)
    assert (c.whiten_advantages, c.value_clip, c.max_grad_norm) == ("minibatch", 0.2, 1.0)
    assert (c.epochs, c.num_minibatches, c.clip_eps, c.gamma) == (1, 4, 0.2, 1.0)


def test_ppo_max_critic_warmup_trains_the_critic_alone(tmp_path):
    config = run_config("ppo_max", **{"algorithm.critic_warmup_steps": 1, "train.steps": 1})
    run = make_run(tmp_path, config)
    policy0 = [p.detach().clone() for p in run.policy.parameters()]
    critic0 = [p.detach().clone() for p in run.critic.parameters()]
    run.train()
    assert all(torch.equal(a, b) for a, b in zip(policy0, run.policy.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(critic0, run.critic.parameters()))
    assert run.algorithm.updates == 1  # the next update would move the policy


def test_ppo_max_ptx_needs_sft_texts(tmp_path):
    config = run_config("ppo_max", **{"algorithm.ptx_coef": 1.0})
    with pytest.raises(ConfigError, match="ptx_coef"):
        make_run(tmp_path, config)


def test_ppo_max_ptx_runs_on_the_task_sft_texts(tmp_path, monkeypatch):
    from rlkit.tasks.toy import ToyTask

    monkeypatch.setattr(ToyTask, "pretraining_texts", lambda self: ["good film", "a good plot"])
    run = make_run(tmp_path, run_config("ppo_max", **{"algorithm.ptx_coef": 0.5,
                                                      "train.steps": 1}))
    run.train()
    row = read_rows(run.run_dir / "metrics.jsonl")[1]
    assert math.isfinite(row["ppo_max/ptx_loss"]) and row["ppo_max/ptx_loss"] > 0


def test_ppo_max_ptx_adds_the_weighted_lm_loss():
    algo = PPOMax(PPOMaxConfig(ptx_coef=2.0, ptx_batch_size=2, whiten_advantages="none"))
    algo.ptx_texts, algo.rng = ["a b", "c d", "e f"], __import__("random").Random(0)
    algo.lm_loss = lambda texts: torch.tensor(float(len(texts)))  # 2 texts ⇒ "loss" 2
    batch = _three_token_batch()
    algo.prepare(batch)
    out = PolicyOutput(torch.zeros(1, 3), torch.zeros(1, 3), batch.values)
    with_ptx, metrics = algo.loss(batch, out)
    algo.lm_loss = None
    without, _ = algo.loss(batch, out)
    close(with_ptx - without, 2.0 * 2)
    close(metrics["ppo_max/ptx_loss"], 2.0)


# ---------------------------------------------------------------------------------------------
# A2C
# ---------------------------------------------------------------------------------------------


def test_a2c_loss_on_hand_values():
    # −E[A·logπ] = −mean(2·−1, 1·−2) = 2;  E[(R̂ − V)²] = mean(0.25, 1) = 0.625;  E[H] = 0.75
    loss, metrics = a2c_loss(T([[-1.0, -2.0]]), T([[2.0, 1.0]]), T([[0.5, 1.0]]),
                             T([[1.0, 0.0]]), T([[1.0, 0.5]]), torch.ones(1, 2),
                             vf_coef=0.5, ent_coef=0.1)
    close(metrics["loss/policy"], 2.0)
    close(metrics["loss/value"], 0.625)
    close(loss, 2.0 + 0.5 * 0.625 - 0.1 * 0.75)


def test_a2c_advantages_are_discounted_returns_minus_values_with_lambda_one():
    # r = [−0.02, −0.04 + 1] (β = 0.1, KL 0.2, 0.4);  G0 = −0.02 + 0.99·0.96 = 0.9304
    algo = A2C(A2CConfig())
    batch = experience(response_mask=torch.ones(1, 2), scores=T([1.0]), kl=T([[0.2, 0.4]]),
                       values=T([[0.3, 0.5]]))
    algo.prepare(batch)
    close(batch.returns, T([[0.9304, 0.96]]))
    close(batch.advantages, T([[0.9304 - 0.3, 0.96 - 0.5]]))


def test_a2c_refuses_several_updates_per_batch():
    with pytest.raises(ConfigError, match="one on-policy gradient step"):
        A2C(A2CConfig(epochs=4))


# ---------------------------------------------------------------------------------------------
# DPO
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.1, 1.0, 5.0])
def test_dpo_loss_is_log_two_when_policy_equals_reference(beta):
    logp = T([-3.0, -7.5, -0.2])
    loss, metrics = dpo_loss(logp, logp - 1, logp, logp - 1, beta)
    close(loss, math.log(2))
    close(metrics["rewards/margins"], 0.0)


def test_dpo_cdpo_and_ipo_losses_on_hand_values():
    # h = (−1 + 2) − (−3 + 2.5) = 1.5;  β = 0.1
    args = (T([-1.0]), T([-3.0]), T([-2.0]), T([-2.5]))
    loss, m = dpo_loss(*args, beta=0.1)
    close(loss, math.log(1 + math.exp(-0.15)))  # −log σ(x) = log(1 + e^{−x})
    close(m["rewards/chosen"], 0.1)
    close(m["rewards/rejected"], -0.05)
    close(m["rewards/margins"], 0.15)
    close(m["rewards/accuracies"], 1.0)
    smoothed, _ = dpo_loss(*args, beta=0.1, label_smoothing=0.25)
    close(smoothed, 0.75 * math.log(1 + math.exp(-0.15)) + 0.25 * math.log(1 + math.exp(0.15)))
    ipo, _ = dpo_loss(*args, beta=0.1, loss_type="ipo")
    close(ipo, (1.5 - 1 / 0.2) ** 2)


def test_dpo_online_pairs_best_against_worst_and_drops_ties():
    algo = DPO(DPOConfig(mode="online", samples_per_prompt=3))
    batch = experience(response_mask=torch.ones(8, 1),
                       scores=T([1.0, 0.0, 2.0, 2.0, 0.0, 5.0, 3.0, 4.0]),
                       group_ids=T([0, 0, 1, 1, 2, 2, 2, 3]))
    metrics = algo.prepare(batch)
    assert batch.extras["dpo_role"].tolist() == [1, -1, 0, 0, -1, 1, 0, 0]
    close(metrics["dpo/pair_fraction"], 2 / 4)
    # the loss averages over all 4 groups; the 2 pairs contribute log 2 each at π = π_ref
    out = PolicyOutput(torch.zeros(8, 1), torch.zeros(8, 1))
    loss, _ = algo.loss(batch, out)
    close(loss, 2 * math.log(2) / 4)


def test_dpo_first_loss_of_a_run_is_log_two(tmp_path):
    config = run_config("dpo")
    run = make_run(tmp_path, config)
    assert run.spec.data_kind == "preferences"
    exp, _ = run.preference_batch(1)
    run.algorithm.prepare(exp)
    loss, metrics = run.algorithm.loss(exp, run.policy_output(exp, 1.0))
    close(loss, math.log(2), tol=1e-5)
    close(metrics["rewards/accuracies"], 0.0)  # r̂_w = r̂_l = 0: none strictly above


def test_dpo_refuses_a_pair_split_across_micro_batches():
    from rlkit.errors import RlkitError

    algo = DPO(DPOConfig())
    batch = experience(response_mask=torch.ones(3, 1), scores=T([1.0, 0.0, 1.0]),
                       group_ids=T([0, 0, 1]))  # pair 1 lost its rejected response
    algo.prepare(batch)
    with pytest.raises(RlkitError, match="grad_accum_steps"):
        algo.loss(batch, PolicyOutput(torch.zeros(3, 1), torch.zeros(3, 1)))


def test_dpo_online_needs_two_samples_per_prompt():
    with pytest.raises(ConfigError, match="samples_per_prompt"):
        DPO(DPOConfig(mode="online", samples_per_prompt=1))


# ---------------------------------------------------------------------------------------------
# docs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a2c", "ppo_clip", "ppo_kl", "ppo_max", "dpo"])
def test_docs_list_every_default_the_plugin_sets(name):
    """docs/algorithms.md shows each field an algorithm adds or re-defaults, with its default."""
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


def test_dpo_trains_on_a_users_preference_file(tmp_path):
    import json

    path = tmp_path / "prefs.jsonl"
    rows = [{"prompt": "the movie", "chosen": "good good", "rejected": "bad awful"}] * 4
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = run_config("dpo", **{"train.steps": 2, "rollout.batch_size": 2})
    config["preferences"] = str(path)
    run = make_run(tmp_path, config)
    run.train()
    steps = [r for r in read_rows(run.run_dir / "metrics.jsonl") if r["train/step"] > 0]
    close(steps[0]["loss/policy"], math.log(2), tol=1e-5)
    assert steps[1]["rewards/margins"] > 0  # the second step sees the first step's update


def test_plugins_json_lists_all_six_algorithms():
    import json

    from click.testing import CliRunner

    from rlkit.cli import cli_for_tests

    result = CliRunner().invoke(cli_for_tests(), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    registered = {a for row in json.loads(result.output) for a in row["algorithms"]}
    assert {"reinforce", "a2c", "ppo_clip", "ppo_kl", "ppo_max", "dpo"} <= registered
