"""Every algorithm learns on the built-in review world.

Each algorithm runs with its own defaults for the same sample budget (responses; a DPO pair
counts two) and must end with a higher held-out reward than the SFT policy it starts from —
the engine's step-0 evaluation — for each of 3 seeds. Only the experiment-level settings are
shared and fixed here: the learning rate (the papers' rates are for billion-parameter models;
these policies have ~10⁵ parameters), the batch, the response length and the budget.

The world is built once per session into a temporary cache (about a minute on one core).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_run, read_rows

ALGORITHMS = ["reinforce", "a2c", "ppo_clip", "ppo_kl", "ppo_max", "dpo"]
SEEDS = [0, 1, 2]
BUDGET = 640  # responses per run: 40 rollout steps of 16, or 20 steps of 16 DPO pairs
MARGIN = 0.1  # eval/reward must end this far above the SFT policy's (RM scores, std ≈ 1)


def learn_config(algorithm: str, seed: int) -> dict:
    return {
        "name": f"{algorithm}-{seed}",
        "seed": seed,
        "task": {"name": "reviews"},
        "algorithm": {"name": algorithm, "lr": 1e-3},
        "rollout": {"batch_size": 16, "max_new_tokens": 24},
        # one thread: on a shared 2-core machine two threads per process are much slower
        "train": {"samples": BUDGET, "threads": 1},
        "eval": {"every": 0, "num_prompts": 128},
        "tracking": {"trackers": ["jsonl"]},
    }


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_algorithm_beats_the_sft_policy(reviews_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path, algorithm: str, seed: int) -> None:
    monkeypatch.setenv("RLKIT_CACHE_DIR", str(reviews_cache))
    run = make_run(tmp_path, learn_config(algorithm, seed))
    run.train()
    evals = [r for r in read_rows(run.run_dir / "metrics.jsonl") if "eval/reward" in r]
    sft, final = evals[0], evals[-1]
    assert sft["train/step"] == 0 and final["train/step"] == run.total_steps
    assert final["train/samples"] == pytest.approx(BUDGET, abs=32)
    assert final["eval/reward"] > sft["eval/reward"] + MARGIN, (
        f"{algorithm} seed {seed}: eval/reward {sft['eval/reward']:.3f} (SFT) → "
        f"{final['eval/reward']:.3f} after {final['train/samples']} samples")
