"""The correctness invariants of DESIGN.md, each on real numbers."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_run, read_rows, tiny_config

from rlkit.ops import kl_penalty
from rlkit.rollout import forward_response, response_mask_after_eos, sample
from rlkit.tasks.toy import WORDS
from rlkit.testing import first_step_gradients
from rlkit.training import build_word_tokenizer

NONDETERMINISTIC = ("perf/", "train/wall_s")


def _deterministic(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith(NONDETERMINISTIC)}


def test_pad_differs_from_eos_even_when_the_tokenizer_shares_them(tmp_path):
    from rlkit.models import ensure_pad_token

    tok = build_word_tokenizer(WORDS)
    tok.pad_token = tok.eos_token  # the GPT-2 habit rlkit must undo
    assert tok.pad_token_id == tok.eos_token_id
    ensure_pad_token(tok, None)
    assert tok.pad_token_id != tok.eos_token_id
    run = make_run(tmp_path)
    assert run.tokenizer.pad_token_id != run.tokenizer.eos_token_id


def test_response_is_truncated_after_the_first_eos():
    eos = 2
    tokens = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 9, 9, 9]])
    mask, ended = response_mask_after_eos(tokens, eos)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert ended.tolist() == [True, False, True]


def test_sampled_responses_hold_nothing_but_padding_after_eos(tmp_path):
    run = make_run(tmp_path)
    samples, _ = run.generate(run.train_prompts[:16], 2, seed=3, temperature=1.0,
                              max_new_tokens=12)
    response = samples.input_ids[:, samples.prompt_len:]
    eos, pad = run.tokenizer.eos_token_id, run.tokenizer.pad_token_id
    for row, mask in zip(response.tolist(), samples.response_mask.tolist()):
        if eos in row:
            first = row.index(eos)
            assert all(t == pad for t in row[first + 1:])
            assert mask == [1.0] * (first + 1) + [0.0] * (len(row) - first - 1)


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.5])
def test_logprobs_use_the_sampling_temperature(tmp_path, temperature):
    run = make_run(tmp_path)
    samples, _ = run.generate(run.train_prompts[:4], 1, seed=0, temperature=temperature,
                              max_new_tokens=5)
    ids, attn, plen = samples.input_ids, samples.attention_mask, samples.prompt_len
    with torch.no_grad():
        logprobs, _ = forward_response(run.policy, ids, attn, plen, temperature)
    # manual: a plain forward, logits / T, log-softmax, gather — one row at a time, unpadded
    for i in range(ids.shape[0]):
        keep = attn[i].bool()
        row_ids = ids[i][keep].unsqueeze(0)
        with torch.no_grad():
            logits = run.policy(input_ids=row_ids).logits[0] / temperature
        n_prompt = int(attn[i, :plen].sum())
        n_resp = int(samples.response_mask[i].sum())
        manual = torch.log_softmax(logits, -1)[n_prompt - 1 : n_prompt - 1 + n_resp]
        manual = manual.gather(1, row_ids[0, n_prompt : n_prompt + n_resp].unsqueeze(1))[:, 0]
        torch.testing.assert_close(logprobs[i, :n_resp], manual, atol=1e-5, rtol=1e-5)


def test_sampling_matches_the_temperature_scaled_distribution():
    """Empirical token frequencies of the first sampled token follow softmax(logits/T)."""
    torch.manual_seed(0)

    class Fixed(torch.nn.Module):
        def forward(self, input_ids, attention_mask, position_ids, past_key_values=None,
                    use_cache=True):
            logits = torch.tensor([0.0, 1.0, 2.0, 0.5]).expand(input_ids.shape[0],
                                                               input_ids.shape[1], 4)
            return type("O", (), {"logits": logits, "past_key_values": None})()

    n, temperature = 20000, 2.0
    samples = sample(Fixed(), torch.ones(n, 1, dtype=torch.long), torch.ones(n, 1),
                     max_new_tokens=1, eos_id=3, pad_id=0, temperature=temperature,
                     generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(samples.input_ids[:, 1], minlength=4).float() / n
    expected = torch.softmax(torch.tensor([0.0, 1.0, 2.0, 0.5]) / temperature, -1)
    torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_estimators_on_hand_values(estimator):
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    l = logp - ref  # [0.5, -1.0]
    expected = {"k1": l, "k2": 0.5 * l**2, "k3": torch.exp(-l) - 1 + l}[estimator]
    torch.testing.assert_close(kl_penalty(logp, ref, estimator), expected)
    assert kl_penalty(logp, logp, estimator).abs().max() == 0


def test_kl_is_zero_and_ratio_is_one_before_the_first_update(tmp_path):
    config = tiny_config(**{"train.steps": 1, "kl.estimator": "k3"})
    run = make_run(tmp_path, config)
    run.train()
    rows = read_rows(run.run_dir / "metrics.jsonl")
    assert rows[0]["train/step"] == 0 and rows[0]["eval/kl"] == 0.0
    # step 1's rollout is sampled before any update: KL to the reference is exactly 0 ...
    assert rows[1]["objective/kl"] == 0.0
    # ... and with one epoch of one minibatch the ratio π/π_old is exactly 1
    assert rows[1]["policy/ratio_mean"] == 1.0
    assert rows[1]["policy/approx_kl"] == 0.0


def test_one_minibatch_of_eight_equals_eight_accumulated_minibatches_of_one(tmp_path):
    def grads(accum: int):
        config = tiny_config(**{"algorithm.grad_accum_steps": accum, "rollout.batch_size": 8,
                                "algorithm.samples_per_prompt": 1,
                                "algorithm.baseline": "moving_average"})
        run = make_run(tmp_path, config, name=f"accum{accum}")
        exp, _ = run.rollout(1)
        with torch.no_grad():
            run.algorithm.prepare(exp)
        return first_step_gradients(run, exp)  # reinforce: one optimizer step per update

    one, eight = grads(1), grads(8)
    assert one.keys() == eight.keys() and len(one) > 0
    for name in one:
        torch.testing.assert_close(one[name], eight[name], atol=1e-6, rtol=1e-4)


def test_same_seed_gives_an_identical_metrics_file(tmp_path):
    rows = []
    for name in ("a", "b"):
        run = make_run(tmp_path, name=name)
        run.train()
        rows.append([_deterministic(r) for r in read_rows(run.run_dir / "metrics.jsonl")])
    assert rows[0] == rows[1]
    other = make_run(tmp_path, tiny_config(seed=1), name="c")
    other.train()
    assert [_deterministic(r) for r in read_rows(other.run_dir / "metrics.jsonl")] != rows[0]


def test_killed_and_resumed_run_ends_like_an_uninterrupted_run(tmp_path):
    config = tiny_config(**{"train.steps": 6, "checkpoint.every": 2})
    full = make_run(tmp_path, config, name="full")
    full.train()

    killed = make_run(tmp_path, config, name="killed")
    real_step = killed.train_step

    def die_at_5(trackers):
        if killed.step == 4:
            raise KeyboardInterrupt  # killed after step 4's checkpoint, during step 5
        return real_step(trackers)

    killed.train_step = die_at_5
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    assert [r["train/step"] for r in read_rows(killed.run_dir / "metrics.jsonl")] == [0, 1, 2, 3, 4]

    resumed = make_run(tmp_path, config, resume=True, name="killed")
    resumed.train()
    a = [_deterministic(r) for r in read_rows(full.run_dir / "metrics.jsonl")]
    b = [_deterministic(r) for r in read_rows(resumed.run_dir / "metrics.jsonl")]
    assert [r["train/step"] for r in b] == [0, 1, 2, 3, 4, 5, 6]  # none lost, none repeated
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            assert math.isclose(x[key], y[key], rel_tol=1e-5, abs_tol=1e-6), key


def test_missing_eos_penalty_is_subtracted_only_from_unfinished_responses(tmp_path):
    run = make_run(tmp_path, tiny_config(**{"rollout.missing_eos_penalty": 1.5,
                                            "rollout.max_new_tokens": 2}))
    exp, info = run.rollout(1)
    ended = info.ended
    assert (~ended).any()
    expected = info.raw_scores - 1.5 * (~ended).float()
    torch.testing.assert_close(exp.scores, expected)


def test_top_k_and_top_p_filtering_on_hand_values():
    from rlkit.rollout import filter_logits

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept_k = torch.isfinite(filter_logits(logits, top_k=2, top_p=1.0))
    assert kept_k.tolist() == [[True, True, False, False]]
    # top-p 0.7: 0.5 < 0.7, 0.5 + 0.3 crosses it → keep the first two
    kept_p = torch.isfinite(filter_logits(logits, top_k=0, top_p=0.7))
    assert kept_p.tolist() == [[True, True, False, False]]
    kept_all = torch.isfinite(filter_logits(logits, top_k=0, top_p=1.0))
    assert kept_all.all()
