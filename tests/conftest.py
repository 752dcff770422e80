"""Shared fixtures: tiny models built from config, no network, no wandb server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

TINY_POLICY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 32}


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A run on the toy task that takes a second or two."""
    config: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "task": {"name": "toy"},
        "policy": {"config": dict(TINY_POLICY)},
        "reward": {"model": "count_good"},
        "algorithm": {"name": "reinforce", "lr": 3e-3, "samples_per_prompt": 2,
                      "baseline": "leave_one_out"},
        "rollout": {"batch_size": 4, "max_new_tokens": 6},
        "train": {"steps": 3},
        "eval": {"every": 2, "num_prompts": 8},
        "tracking": {"trackers": ["jsonl"]},
    }
    for key, value in overrides.items():
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return config


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own cache dir and a fresh process-wide plugin manager."""
    from rlkit.plugins import set_plugin_manager

    monkeypatch.setenv("RLKIT_CACHE_DIR", str(tmp_path / "cache"))
    set_plugin_manager(None)
    yield
    set_plugin_manager(None)


def make_run(tmp_path: Path, config: dict[str, Any] | None = None, resume: bool = False,
             name: str | None = None):
    from rlkit.config import load_config
    from rlkit.engine import Run

    data = dict(config or tiny_config())
    if name:
        data["name"] = name
    return Run(load_config(data=data), out=tmp_path / "runs", resume=resume)


def read_rows(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def reviews_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in review world, built once per test session into a temporary cache."""
    import torch

    from rlkit.tasks.reviews.task import ReviewsTask

    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("reviews-cache")
    ReviewsTask({}, cache_dir=cache).prepare()
    return cache
