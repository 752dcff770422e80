"""The reviews world's preference-rich option (``preference_pairs: rich``): DPO-paper-style
pairs (several SFT samples per prompt, every pair ordered by gold), the unpaired file derived
from them, the default world's cache key untouched, and offline DPO learning from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlkit.errors import ConfigError
from rlkit.tasks.reviews import ReviewsTask
from rlkit.tasks.reviews.gold import gold_reward
from rlkit.tasks.reviews.options import parse_options

RICH = {"preference_pairs": "rich"}


@pytest.fixture(scope="session")
def rich_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reviews world with rich preference pairs, built once per test session."""
    import torch

    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("reviews-rich-cache")
    ReviewsTask(RICH, cache_dir=cache).prepare()
    return cache


def _rows(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_the_option_is_validated_and_the_default_keeps_its_cache_key(tmp_path: Path) -> None:
    # the digest of the defaults before the option existed: the quickstart's cached world
    assert parse_options({}).digest() == "03e2ba8e5e"
    assert parse_options({"preference_pairs": "small"}).digest() == "03e2ba8e5e"
    assert "preference_pairs" not in parse_options({}).as_dict()
    default = ReviewsTask({}, cache_dir=tmp_path)
    rich = ReviewsTask(RICH, cache_dir=tmp_path)
    assert rich.world_dir != default.world_dir
    assert default.unpaired() is None
    with pytest.raises(ConfigError, match="preference_pairs.*small, rich"):
        ReviewsTask({"preference_pairs": "huge"}, cache_dir=tmp_path)


def test_rich_pairs_are_ordered_by_gold_and_number_thousands(rich_cache: Path) -> None:
    task = ReviewsTask(RICH, cache_dir=rich_cache)
    figures = task.prepare()
    pairs = _rows(task.preferences())
    print(f"rich preference pairs: {len(pairs)}; figures: {figures}")
    assert figures["preference_pairs"] == len(pairs) >= 2000
    train = set(task.prompts("train"))
    for pair in pairs:
        assert pair["prompt"] in train and pair["chosen"] != pair["rejected"]
        assert gold_reward(pair["prompt"], pair["chosen"]) > gold_reward(
            pair["prompt"], pair["rejected"]
        )
    unpaired = _rows(task.unpaired() or "")
    assert len(unpaired) == figures["unpaired_examples"] > 0
    assert 0 < figures["unpaired_desirable"] < len(unpaired)
    seen = set()
    for row in unpaired:
        assert set(row) == {"prompt", "completion", "label"} and isinstance(row["label"], bool)
        assert (row["prompt"], row["completion"]) not in seen
        seen.add((row["prompt"], row["completion"]))


def test_offline_dpo_on_rich_pairs_beats_the_sft_policy(
    rich_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held-out gold reward of offline DPO on the rich pairs ends above the SFT policy's
    (step 0), and the implicit-reward preference accuracy is clearly above chance, on the
    training batches and on held-out pairs built the same way from the eval prompts."""
    import torch

    from rlkit.config import load_config
    from rlkit.core.run import Run

    torch.set_num_threads(1)
    monkeypatch.setenv("RLKIT_CACHE_DIR", str(rich_cache))
    steps = 40
    data = {
        "name": "dpo_rich",
        "seed": 0,
        "task": {"name": "reviews", "options": RICH},
        "algorithm": {"name": "dpo", "lr": 3e-4, "kl_coef": 0.3},
        "rollout": {"batch_size": 16, "max_new_tokens": 24},
        "train": {"steps": steps, "threads": 1},
        "eval": {"every": steps, "num_prompts": 64},
        "tracking": {"trackers": ["jsonl"]},
    }
    run = Run(load_config(data=data), out=tmp_path / "runs")
    run.train()
    (metrics,) = (tmp_path / "runs").rglob("metrics.jsonl")
    rows = _rows(metrics)
    evals = {row["train/step"]: row["eval/gold_reward"] for row in rows if "eval/gold_reward" in row}
    accuracies = [row["rewards/accuracies"] for row in rows if "rewards/accuracies" in row]
    late = sum(accuracies[-10:]) / len(accuracies[-10:])
    print(f"DPO rich: eval gold {evals[0]:.3f} -> {evals[max(evals)]:.3f}; "
          f"implicit-reward accuracy (last 10 steps) {late:.3f}")
    assert evals[max(evals)] > evals[0]
    assert late > 0.55  # measured 0.619 (seed 0): 160 pairs, ~3 standard errors above chance

    # Held out: pairs built as the rich pairs are, but on the eval prompts, never trained on.
    task = ReviewsTask(RICH, cache_dir=rich_cache)
    heldout = _heldout_pairs(task)
    run.policy.eval()
    n = len(heldout)
    margins = _implicit_reward_margins(run, heldout, beta=data["algorithm"]["kl_coef"])
    accuracy = float((margins > 0).float().mean())
    stderr = (0.25 / n) ** 0.5  # of a fraction at chance
    print(f"DPO rich: held-out implicit-reward accuracy {accuracy:.3f} on {n} pairs "
          f"(chance 0.5, standard error {stderr:.3f})")
    assert n >= 200
    # measured 0.574 on 1170 pairs (seed 0): ~5 standard errors above chance
    assert accuracy > 0.55 and accuracy > 0.5 + 2 * stderr


def _heldout_pairs(task: ReviewsTask) -> list[dict[str, str]]:
    """Rich pairs on the eval prompts: the builder's own sampler and gold ordering (several
    SFT samples per prompt, every pair ordered by gold, ties and empty responses dropped)."""
    from transformers import GPT2LMHeadModel

    from rlkit.tasks.reviews.build import _rich_preference_pairs

    policy = GPT2LMHeadModel.from_pretrained(task.policy())
    pairs, _, _ = _rich_preference_pairs(
        policy, task.tokenizer(), task.prompts("eval"), task.config.seed
    )
    eval_prompts = set(task.prompts("eval"))
    assert all(pair["prompt"] in eval_prompts for pair in pairs)
    assert not eval_prompts & set(task.prompts("train"))
    return pairs


def _implicit_reward_margins(run: Any, pairs: list[dict[str, str]], beta: float) -> Any:
    """β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))] per pair, with the
    run's final policy and its SFT reference, on the run's own layout of the pairs."""
    import torch

    def implicit_rewards(responses: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(pairs), 64):
            chunk = pairs[start : start + 64]
            batch = run.tokenize([p["prompt"] for p in chunk], responses[start : start + 64])
            policy = run.policy_logprobs(batch, grad=False).sum(-1)
            reference = run.reference_logprobs(batch).sum(-1)
            out.append(beta * (policy - reference))
        return torch.cat(out)

    chosen = implicit_rewards([p["chosen"] for p in pairs])
    rejected = implicit_rewards([p["rejected"] for p in pairs])
    return chosen - rejected
