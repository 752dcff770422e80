"""End-to-end: REINFORCE must actually learn, and every canonical metric must be logged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import make_run, read_rows, tiny_config

from rlkit import metrics as M


def test_reinforce_clearly_raises_the_reward_within_100_steps(tmp_path):
    config = tiny_config(**{
        "train.steps": 60, "eval.every": 20, "rollout.batch_size": 8,
        "rollout.max_new_tokens": 8, "algorithm.samples_per_prompt": 4,
        "algorithm.kl_coef": 0.01,
    })
    run = make_run(tmp_path, config)
    run.train()
    rows = read_rows(run.run_dir / "metrics.jsonl")
    evals = [r["eval/reward"] for r in rows if "eval/reward" in r]
    train = [r["objective/reward"] for r in rows if "objective/reward" in r]
    # reward = number of "good" in an 8-token response: ~0.4 at random init, 8 at most
    assert evals[0] < 1.0
    assert evals[-1] > evals[0] + 3.0, evals
    assert np.mean(train[-10:]) > np.mean(train[:10]) + 3.0


def test_every_baseline_learns_something(tmp_path):
    for baseline, k in (("none", 1), ("moving_average", 1), ("leave_one_out", 2)):
        config = tiny_config(**{"train.steps": 25, "eval.every": 0, "rollout.batch_size": 8,
                                "algorithm.baseline": baseline, "algorithm.samples_per_prompt": k})
        run = make_run(tmp_path, config, name=baseline)
        run.train()
        rows = read_rows(run.run_dir / "metrics.jsonl")
        assert rows[-1]["eval/reward"] > rows[0]["eval/reward"], baseline


def test_rows_carry_every_canonical_metric_that_applies_and_wandb_runs_offline(tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    config = tiny_config(**{"tracking.trackers": ["console", "jsonl", "wandb"],
                            "tracking.tags": ["test"]})
    run = make_run(tmp_path, config)
    run.train()
    rows = read_rows(run.run_dir / "metrics.jsonl")
    assert [r["train/step"] for r in rows] == [0, 1, 2, 3]
    for row in rows[1:]:
        missing = [k for k in M.ROLLOUT_ROW if k not in row]
        assert not missing, missing
        assert "loss/policy" in row
        assert all(k.split("/")[0] in M.CANONICAL_NAMESPACES + ("reinforce",) for k in row)
    for row in (rows[0], rows[2], rows[3]):  # eval at 0, every 2 steps, and at the end
        assert all(k in row for k in M.EVAL_ROW)
    offline = list(Path(run.run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("*.wandb")), "the offline run holds no data file"
