"""The built-in world exposes over-optimisation: without a KL penalty the proxy reward rises
while the gold reward collapses; with one, gold rises too (Gao et al. 2022)."""

from __future__ import annotations

from conftest import make_run, read_rows


def final_and_start(tmp_path, monkeypatch, reviews_cache, kl_coef: float):
    monkeypatch.setenv("RLKIT_CACHE_DIR", str(reviews_cache))
    config = {
        "name": f"kl{kl_coef}", "seed": 0, "task": {"name": "reviews"},
        "algorithm": {"name": "reinforce", "lr": 2e-3, "kl_coef": kl_coef},
        "rollout": {"batch_size": 16, "max_new_tokens": 24},
        "train": {"steps": 40}, "eval": {"every": 0, "num_prompts": 64},
        "tracking": {"trackers": ["jsonl"]},
    }
    run = make_run(tmp_path, config)
    run.train()
    evals = [r for r in read_rows(run.run_dir / "metrics.jsonl") if "eval/reward" in r]
    return evals[0], evals[-1]


def test_no_kl_penalty_hacks_the_proxy_and_a_penalty_keeps_gold_rising(
        tmp_path, monkeypatch, reviews_cache):
    start, hacked = final_and_start(tmp_path, monkeypatch, reviews_cache, kl_coef=0.0)
    assert hacked["eval/reward"] > start["eval/reward"] + 0.5  # the proxy goes up ...
    assert hacked["eval/gold_reward"] < start["eval/gold_reward"] - 0.3  # ... gold falls
    assert hacked["eval/kl"] > 20  # by drifting far from the reference

    start, kept = final_and_start(tmp_path, monkeypatch, reviews_cache, kl_coef=0.3)
    assert kept["eval/reward"] > start["eval/reward"] + 0.5
    assert kept["eval/gold_reward"] > start["eval/gold_reward"] + 0.1  # gold rises too
    assert kept["eval/kl"] < 10
