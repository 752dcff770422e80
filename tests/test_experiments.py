"""Every shipped experiment file expands into valid runs; the grid runner is resumable and
isolates failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config

from rlkit.compare.experiment import load_experiment
from rlkit.compare.runner import run_grid
from rlkit.errors import ConfigError
from rlkit.plugins import get_plugin_manager

EXPERIMENTS = sorted((Path(__file__).resolve().parent.parent / "experiments").glob("*.yaml"))
COMPARISONS = [p for p in EXPERIMENTS if "algorithms" in yaml.safe_load(p.read_text())]


@pytest.mark.parametrize("path", COMPARISONS, ids=[p.stem for p in COMPARISONS])
def test_shipped_experiment_expands_into_valid_runs(path):
    exp, planned = load_experiment(path, get_plugin_manager().registry.algorithms)
    assert planned and len({p.name for p in planned}) == len(planned)
    assert {p.seed for p in planned} == set(exp.seeds)
    for run in planned:
        assert run.config.tracking.group == exp.name
        assert run.config.algorithm["name"] == run.algorithm


def test_quickstart_is_six_tuned_algorithms_on_five_fresh_seeds():
    root = Path(__file__).resolve().parent.parent / "experiments"
    exp, planned = load_experiment(root / "quickstart.yaml", get_plugin_manager().registry.algorithms)
    assert {p.algorithm for p in planned} == {"reinforce", "a2c", "ppo_clip", "ppo_kl",
                                              "ppo_max", "dpo"}
    assert exp.seeds == [0, 1, 2, 3, 4] and len(planned) == 30
    # its settings are the checked-in tuning run's, whose selection seeds are disjoint
    tuning = yaml.safe_load((root / "quickstart_tuning.yaml").read_text())
    assert not set(tuning["tune"]["seeds"]) & set(exp.seeds)
    lrs = {p.algorithm: p.config.algorithm["lr"] for p in planned}
    assert lrs["ppo_clip"] == 3.0e-4 and lrs["a2c"] == 3.0e-3  # tuned, not one shared lr


def test_sweep_and_unknown_keys(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "s", "seeds": [0], "task": {"name": "toy"},
        "algorithms": [{"name": "reinforce", "sweep": {"algorithm.kl_coef": [0.0, 0.1]}}]}))
    _, planned = load_experiment(path)
    assert [p.config.algorithm["kl_coef"] for p in planned] == [0.0, 0.1]
    assert planned[0].label == "reinforce kl_coef=0.0"
    path.write_text(yaml.safe_dump({"name": "s", "seeds": [0], "algoritms": ["reinforce"]}))
    with pytest.raises(ConfigError, match="unknown key 'algoritms'.*Did you mean 'algorithms'"):
        load_experiment(path)
    path.write_text(yaml.safe_dump({"name": "s", "algorithms": [
        {"name": "reinforce", "set": {"algorithm.baselin": "none"}}]}))
    with pytest.raises(ConfigError, match="run 'reinforce__custom__s0'.*baselin"):
        load_experiment(path)


def test_grid_skips_finished_runs_and_isolates_a_failure(tmp_path):
    good = [dict(tiny_config(seed=s), name=f"good{s}") for s in (0, 1)]
    bad = dict(tiny_config(), name="bad")
    bad["prompts"] = {"train": str(tmp_path / "missing.jsonl")}
    results = run_grid(good + [bad], tmp_path / "exp", workers=2)
    states = {r.name: r.state for r in results}
    assert states == {"good0": "finished", "good1": "finished", "bad": "failed"}
    status = json.loads((tmp_path / "exp" / "bad" / "status.json").read_text())
    assert "missing.jsonl' does not exist" in status["error"]
    again = run_grid(good + [bad], tmp_path / "exp", workers=1)
    assert {r.name: r.state for r in again} == {"good0": "skipped", "good1": "skipped",
                                                "bad": "failed"}


def test_a_killed_run_in_a_grid_resumes_from_its_checkpoint(tmp_path):
    from conftest import read_rows

    from rlkit.config import load_config
    from rlkit.core.run import Run

    config = dict(tiny_config(**{"train.steps": 6, "checkpoint.every": 2}), name="killed")
    run = Run(load_config(data=config), out=tmp_path / "exp")
    assert run.run_dir == tmp_path / "exp" / "killed"
    real_step = run.train_step

    def die_at_5(trackers):
        if run.step == 4:
            raise KeyboardInterrupt
        return real_step(trackers)

    run.train_step = die_at_5
    with pytest.raises(KeyboardInterrupt):
        run.train()
    assert json.loads((run.run_dir / "status.json").read_text())["state"] == "interrupted"
    results = run_grid([config], tmp_path / "exp", workers=1)
    assert [r.state for r in results] == ["finished"]
    steps = [r["train/step"] for r in read_rows(run.run_dir / "metrics.jsonl")]
    assert steps == [0, 1, 2, 3, 4, 5, 6]


def test_ray_executor_on_a_local_instance(tmp_path):
    ray = pytest.importorskip("ray")
    good = [dict(tiny_config(seed=s), name=f"ray{s}") for s in (0, 1)]
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        results = run_grid(good, tmp_path / "exp", executor="ray")
    finally:
        ray.shutdown()
    assert sorted((r.name, r.state) for r in results) == [("ray0", "finished"),
                                                          ("ray1", "finished")]
    rows = (tmp_path / "exp" / "ray0" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["train/step"] == 3


def test_rlkit_compare_stays_callable_once_the_package_is_imported(monkeypatch):
    import rlkit
    import rlkit.api
    import rlkit.compare.logs  # noqa: F401  binds rlkit.compare to the package

    calls = []
    monkeypatch.setattr(rlkit.api, "compare", lambda *a, **k: calls.append((a, k)) or "dir")
    assert rlkit.compare("exp.yaml", "train.steps=2", workers=2) == "dir"
    assert calls == [(("exp.yaml", "train.steps=2"), {"workers": 2})]


def test_set_overrides_are_validated_before_anything_runs(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "seeds": [0], "task": {"name": "toy"},
                                    "algorithms": ["reinforce"]}))
    with pytest.raises(ConfigError, match="stepz"):
        load_experiment(path, overrides=["train.stepz=1"])
    _, planned = load_experiment(path, overrides=["train.steps=7"])
    assert planned[0].config.train.steps == 7


def test_a_grid_shares_one_wandb_service_and_every_run_still_logs_to_wandb(tmp_path,
                                                                           monkeypatch):
    """The local grid starts one wandb service for its workers (``WANDB_SERVICE``), tears it
    down at the end, and every run still writes its own offline wandb run."""
    import os

    from rlkit.compare import runner

    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    monkeypatch.delenv(runner.START_METHOD_ENV, raising=False)  # the default: a fork server
    seen: list[bool] = []
    real_pool = runner._process_pool

    def pool(workers: int) -> object:
        seen.append("WANDB_SERVICE" in os.environ)
        return real_pool(workers)

    monkeypatch.setattr(runner, "_process_pool", pool)
    configs = [dict(tiny_config(seed=s), name=f"w{s}") for s in (0, 1)]
    for config in configs:
        config["tracking"] = {"trackers": ["jsonl", "wandb"]}
    results = run_grid(configs, tmp_path / "exp", workers=2)
    assert [r.state for r in results] == ["finished", "finished"]
    assert seen == [True]
    assert "WANDB_SERVICE" not in os.environ  # torn down with the grid
    for s in (0, 1):
        assert len(list((tmp_path / "exp" / f"w{s}" / "wandb").glob("offline-run-*"))) == 1
    without = [dict(c, tracking={"trackers": ["jsonl"]}) for c in configs]
    assert not runner._uses_wandb(without) and runner._uses_wandb(configs)
    no_section = {k: v for k, v in configs[0].items() if k != "tracking"}
    assert runner._uses_wandb([no_section])  # the default trackers include wandb


def test_grid_runs_fork_from_a_server_that_imported_the_engine_once(monkeypatch):
    """``rlkit compare`` starts the fork server first thing; a run's process is a fork of it,
    with the engine, the built-in algorithm plugins and wandb already imported."""
    import importlib.util
    import multiprocessing.forkserver as forkserver

    from rlkit.cli import _command_of
    from rlkit.compare import runner

    assert _command_of(["--plugin", "p.py", "compare", "exp.yaml"]) == "compare"
    assert _command_of(["--plugin=p.py", "tune", "t.yaml"]) == "tune"
    assert _command_of(["--version"]) is None
    monkeypatch.delenv(runner.START_METHOD_ENV, raising=False)  # the default: a fork server
    runner.start_fork_server()
    assert forkserver._forkserver._forkserver_pid is not None
    with runner._process_pool(1) as pool:
        loaded = pool.submit(_already_imported, ["rlkit.core.run", "rlkit_plugins.ppo_clip",
                                                 "rlkit.tasks.reviews", "wandb"]).result()
    assert loaded["rlkit.core.run"] and loaded["rlkit_plugins.ppo_clip"]
    assert loaded["rlkit.tasks.reviews"]
    assert loaded["wandb"] == (importlib.util.find_spec("wandb") is not None)


def _already_imported(names: list[str]) -> dict[str, bool]:
    import sys

    return {name: name in sys.modules for name in names}
