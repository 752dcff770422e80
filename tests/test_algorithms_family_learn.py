"""Every algorithm of the 2026 family learns on the built-in review world.

Each runs with its own defaults for the quickstart's budget (640 responses) and must end with a
higher held-out reward than the SFT policy it starts from (the engine's step-0 evaluation), for
each of 3 seeds. Shared and fixed, as in test_algorithms_learn.py: the learning rate, the
response length and the budget. The batch is set so that every step trains on the same number
of responses: 16 sampled responses for the rollout methods (GRPO's 2 prompts × G 8, RLOO's
4 prompts × k 4, REINFORCE++'s 16 prompts × 1), and 32 given responses for the offline ones
(16 pairs for SimPO and ORPO, as DPO in test_algorithms_learn.py; 32 labelled responses for KTO).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_run, read_rows

SEEDS = [0, 1, 2]
BUDGET = 640  # responses per run (a pair counts two)
MARGIN = 0.1  # eval/reward must end this far above the SFT policy's (RM scores, std ≈ 1)
BATCH = {"grpo": 2, "rloo": 4, "reinforce_pp": 16, "kto": 32, "simpo": 16, "orpo": 16}


def learn_config(algorithm: str, seed: int) -> dict:
    return {
        "name": f"{algorithm}-{seed}",
        "seed": seed,
        "task": {"name": "reviews"},
        "algorithm": {"name": algorithm, "lr": 1e-3},
        "rollout": {"batch_size": BATCH[algorithm], "max_new_tokens": 24},
        # one thread: on a shared 2-core machine two threads per process are much slower
        "train": {"samples": BUDGET, "threads": 1},
        "eval": {"every": 0, "num_prompts": 128},
        "tracking": {"trackers": ["jsonl"]},
    }


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("algorithm", list(BATCH))
def test_algorithm_beats_the_sft_policy(reviews_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path, algorithm: str, seed: int) -> None:
    monkeypatch.setenv("RLKIT_CACHE_DIR", str(reviews_cache))
    run = make_run(tmp_path, learn_config(algorithm, seed))
    run.train()
    evals = [r for r in read_rows(run.run_dir / "metrics.jsonl") if "eval/reward" in r]
    sft, final = evals[0], evals[-1]
    assert sft["train/step"] == 0 and final["train/step"] == run.total_steps
    # the budget in responses (train/samples also counts KTO's mismatched rows, which are re-pairings)
    assert run.total_steps * BATCH[algorithm] * run.data_kind_class.rows_per_item(
        run.algo_config) == pytest.approx(BUDGET, abs=32)
    assert final["eval/reward"] > sft["eval/reward"] + MARGIN, (
        f"{algorithm} seed {seed}: eval/reward {sft['eval/reward']:.3f} (SFT) → "
        f"{final['eval/reward']:.3f} after {final['train/samples']} samples")
