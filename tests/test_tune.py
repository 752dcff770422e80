"""`rlkit tune`: equal budgets over each algorithm's own space, selection on tuning seeds,
confirmation on fresh ones, resumable."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY_POLICY

from rlkit.compare.experiment import load_experiment, plan_runs, read_experiment
from rlkit.compare.logs import load_experiment as load_logs
from rlkit.compare.tune import Param, resolve_spaces, trials_per_algorithm
from rlkit.errors import ConfigError
from rlkit.plugins import get_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
LRS = [1.0e-3, 3.0e-3, 1.0e-2]


def toy_experiment(tmp_path: Path, **tune: object) -> Path:
    """2 algorithms × 3 learning rates × 2 tuning seeds, confirmed on 3 fresh seeds."""
    data = {
        "name": "toytune",
        "seeds": [0, 1, 2],
        "task": {"name": "toy"},
        "shared": {
            "policy": {"config": dict(TINY_POLICY)},
            "reward": {"model": "count_good"},
            "rollout": {"batch_size": 4, "max_new_tokens": 6},
            "train": {"steps": 3, "threads": 1},
            "eval": {"every": 2, "num_prompts": 8},
            "tracking": {"trackers": ["jsonl"]},
        },
        "algorithms": [{"name": "reinforce", "set": {"algorithm.samples_per_prompt": 2}}, "a2c"],
        "tune": {"sampler": "grid", "seeds": [100, 101], "objective": {"metric": "eval/reward"},
                 "spaces": {"reinforce": {"algorithm.lr": LRS}, "a2c": {"algorithm.lr": LRS}},
                 **tune},
    }
    path = tmp_path / "toytune.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def fast_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork the grid's worker processes (one fresh process per run, without re-importing
    torch in each) and keep each to one thread."""
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("RLKIT_START_METHOD", "fork")


def test_confirmation_seeds_must_be_fresh(tmp_path):
    path = toy_experiment(tmp_path, seeds=[2, 100])
    with pytest.raises(ConfigError, match=r"tune.seeds and seeds share \[2\].*fresh"):
        read_experiment(path)


def test_each_algorithm_gets_its_own_space_and_the_same_budget(tmp_path):
    spaces_file = tmp_path / "spaces.yaml"
    spaces_file.write_text(yaml.safe_dump({"a2c": {"algorithm.kl_coef": [0.1, 0.2, 0.3]}}))
    path = toy_experiment(tmp_path, spaces={"reinforce": {"algorithm.lr": LRS}},
                          spaces_file="spaces.yaml")
    exp, _ = read_experiment(path)
    spaces = resolve_spaces(exp, path)
    assert [(s.label, [p.key for p in s.params]) for s in spaces] == [
        ("reinforce", ["algorithm.lr"]), ("a2c", ["algorithm.kl_coef"])]
    assert spaces[1].source == str(spaces_file)  # the default, as data
    assert trials_per_algorithm(exp.tune, spaces, path) == 3
    spaces_file.write_text(yaml.safe_dump({"a2c": {"algorithm.kl_coef": [0.1, 0.2]}}))
    with pytest.raises(ConfigError, match="same number of trials.*reinforce: 3, a2c: 2"):
        trials_per_algorithm(exp.tune, resolve_spaces(exp, path), path)
    spaces_file.write_text(yaml.safe_dump({}))
    with pytest.raises(ConfigError, match="no search space for 'a2c'"):
        resolve_spaces(exp, path)


def test_ranges_give_a_grid_and_draw_within_bounds():
    from rlkit.compare.experiment import ParamRange

    lr = Param("algorithm.lr", ParamRange(low=1e-4, high=1e-2, log=True, grid=3))
    assert lr.grid_values() == [1e-4, 1e-3, 1e-2] and lr.log_scale
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws = [lr.suggest(study.ask(), grid=False) for _ in range(20)]
    assert all(1e-4 <= d <= 1e-2 for d in draws) and len(set(draws)) == 20


def test_shipped_tuning_experiments_resolve_every_default_space():
    algorithms = get_plugin_manager().registry.algorithms
    defaults = yaml.safe_load((ROOT / "experiments" / "tuning" / "spaces.yaml").read_text())
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        if "tune" not in (yaml.safe_load(path.read_text()) or {}):
            continue
        exp, _ = read_experiment(path)
        if exp.tune is None:
            continue
        spaces = resolve_spaces(exp, path)
        assert trials_per_algorithm(exp.tune, spaces, path) >= 2
        assert not set(exp.tune.seeds) & set(exp.seeds)
    quick, _ = read_experiment(ROOT / "experiments" / "quickstart_tuning.yaml")
    assert {e.name for e in quick.entries} == {"reinforce", "a2c", "ppo_clip", "ppo_kl",
                                              "ppo_max", "dpo"}
    # every default value is a valid setting of its algorithm (validated like a run)
    for name, space in defaults.items():
        if name not in algorithms:
            continue
        exp = quick.model_copy(update={"algorithms": [name], "tune": None})
        for key, spec in space.items():
            for value in Param(key, _spec(spec)).grid_values():
                plan_runs(exp, "spaces.yaml", [_arm(name, {key: value})], [0], None, algorithms)


def _spec(raw):
    from pydantic import TypeAdapter

    from rlkit.compare.experiment import ParamSpec

    return TypeAdapter(ParamSpec).validate_python(raw)


def _arm(name, overrides):
    from rlkit.compare.experiment import Variant

    return Variant(name, name, overrides, name)


def test_rlkit_tune_end_to_end(tmp_path, fast_workers):
    from rlkit.cli import cli_for_tests

    path = toy_experiment(tmp_path)
    out = tmp_path / "runs"
    result = CliRunner().invoke(cli_for_tests(), ["tune", str(path), "--out", str(out),
                                                  "--workers", "2"])
    assert result.exit_code == 0, result.output
    exp_dir = out / "toytune"
    trials = load_logs(exp_dir / "tune" / "trials")
    assert len(trials.finished) == 12  # 2 algorithms × 3 learning rates × 2 tuning seeds
    tuned_seeds = {r.seed for r in trials.runs}
    confirm = load_logs(exp_dir / "confirm")
    assert len(confirm.finished) == 6
    confirm_seeds = {r.seed for r in confirm.runs}
    assert tuned_seeds == {100, 101} and confirm_seeds == {0, 1, 2}
    assert not tuned_seeds & confirm_seeds  # selection never saw the confirmation seeds

    # the chosen value is the trial with the best mean objective over the tuning seeds
    tuned_exp, planned = load_experiment(exp_dir / "tuned.yaml")
    assert {p.seed for p in planned} == {0, 1, 2} and tuned_exp.tune is None
    for entry in tuned_exp.entries:
        by_lr: dict[float, list[float]] = {}
        for run in trials.runs:
            if run.label == entry.display:
                by_lr.setdefault(run.config["algorithm"]["lr"], []).append(
                    run.final("eval/reward"))
        means = {lr: sum(v) / len(v) for lr, v in by_lr.items()}
        assert sorted(means) == LRS
        best = max(means.values())
        assert means[entry.set["algorithm.lr"]] == pytest.approx(best)
        assert f"{entry.display}: algorithm.lr=" in result.output

    markdown = (exp_dir / "report.md").read_text()
    assert "## How it was tuned" in markdown and "3 trials" in markdown
    assert "tuning seed [100, 101]" in markdown and "fresh seeds [0, 1, 2]" in markdown
    assert "![sensitivity_algorithm_lr](figures/sensitivity_algorithm_lr.png)" in markdown
    assert (exp_dir / "figures" / "sensitivity_algorithm_lr.png").stat().st_size > 1000
    assert "## Confirmed comparison" in markdown and "| 1 |" in markdown
    assert "95%" not in markdown  # 3 confirmation seeds: ranges, not intervals
    assert (exp_dir / "confirm" / "report.md").is_file()
    assert "data:image/png;base64," in (exp_dir / "report.html").read_text()


def test_a_killed_tuning_resumes_without_rerunning_finished_trials(tmp_path, fast_workers):
    from rlkit.compare.tune import tune
    from rlkit.plugins import make_plugin_manager

    path = toy_experiment(tmp_path)
    out = tmp_path / "runs"
    pm = make_plugin_manager()

    def killed_after_the_trial_grid(line: str) -> None:
        if line.startswith("grid done"):
            raise KeyboardInterrupt  # every trial run finished, no trial told yet

    with pytest.raises(KeyboardInterrupt):
        tune(path, [], out, pm=pm, workers=2, echo=killed_after_the_trial_grid)
    exp_dir = out / "toytune"
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(exp_dir / "tune" / "optuna.journal")))
    running = [t for s in optuna.get_all_study_summaries(journal) for t in
               optuna.load_study(study_name=s.study_name, storage=journal).trials]
    assert len(running) == 6 and {t.state.name for t in running} == {"RUNNING"}
    # as if the kill came earlier: one trial's two runs never finished
    lost = sorted((exp_dir / "tune" / "trials").glob("a2c__t001__*"))
    assert len(lost) == 2
    for run_dir in lost:
        (run_dir / "status.json").write_text(json.dumps({"state": "running"}))
        (run_dir / "metrics.jsonl").unlink()
        for checkpoint in (run_dir / "checkpoints").glob("*"):
            import shutil

            shutil.rmtree(checkpoint)

    lines: list[str] = []
    result = tune(path, [], out, pm=pm, workers=2, echo=lines.append, report=False)
    trial_lines = [ln for ln in lines if "__t0" in ln and ln.startswith("  [")]
    assert sum(ln.endswith(": finished") for ln in trial_lines) == 2  # only the lost runs
    assert sum(ln.endswith(": skipped") for ln in trial_lines) == 10
    assert all("a2c__t001" in ln for ln in trial_lines if ln.endswith(": finished"))
    states = [(t.label, t.number, t.state) for t in result.trials]
    assert sorted(states) == sorted((label, n, "complete") for label in ("reinforce", "a2c")
                                    for n in range(3))  # no trial asked twice
    assert all(math.isfinite(t.value) for t in result.trials)

    lines.clear()  # a third run has nothing left to do
    tune(path, [], out, pm=pm, workers=2, echo=lines.append, report=False)
    assert not any(ln.endswith(": finished") for ln in lines)


def test_a_failing_trial_fails_alone(tmp_path, fast_workers):
    from rlkit.compare.tune import tune
    from rlkit.plugins import make_plugin_manager

    # one learning rate the optimizer refuses: its trial fails, the rest is tuned and confirmed
    path = toy_experiment(tmp_path, spaces={"reinforce": {"algorithm.lr": [1.0e-3, -1.0]},
                                            "a2c": {"algorithm.lr": [1.0e-3, 3.0e-3]}})
    result = tune(path, [], tmp_path / "runs", pm=make_plugin_manager(), workers=2,
                  report=False)
    failed = [t for t in result.trials if t.state == "failed"]
    assert [(t.label, t.params["algorithm.lr"]) for t in failed] == [("reinforce", -1.0)]
    assert failed[0].error
    assert result.chosen["reinforce"].params == {"algorithm.lr": 1.0e-3}
    assert len(load_logs(result.confirm_dir).finished) == 6
