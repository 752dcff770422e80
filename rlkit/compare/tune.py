"""``rlkit tune``: tune every algorithm with the same budget, then confirm on fresh seeds.

A comparison of tuned algorithms is fair only if each got the same tuning effort over a
space suited to it, and if the numbers reported were not the ones the choice was fitted
to. So, for the experiment's ``tune:`` section (schema in :mod:`rlkit.compare.experiment`):

1. every algorithm has its own search space (the experiment's ``tune.spaces``, else its
   default in the ``tune.spaces_file``: data, never code, since the core names no
   algorithm) and gets the same number of trials from the same sampler (Optuna: grid,
   random or TPE), each trial run on the same **tuning seeds**;
2. each trial's objective is one declared metric (its final value or its AUC), averaged
   over the tuning seeds; the best trial per algorithm is chosen;
3. ``tuned.yaml``, a runnable experiment with each algorithm's chosen values, is written
   and run on the experiment's ``seeds``, which must be disjoint from the tuning seeds;
4. the report says how it was tuned, shows each algorithm's sensitivity to each
   hyperparameter and the confirmed comparison.

Trials run on the grid runner (local processes or Ray), so runs are isolated (a failed run
fails its trial, not the tuning) and resumable: trials live in an Optuna journal file in
the output directory, finished runs are never rerun, and a trial left running by a killed
process is completed on the next invocation. Layout::

    OUT/<name>/tune/optuna.journal      every trial: parameters, state, objective
    OUT/<name>/tune/setup.json          what was tuned (a changed setup is refused)
    OUT/<name>/tune/trials/<label>__tNNN__<task>__s<seed>/   one run directory each
    OUT/<name>/tuned.yaml               the chosen values as an experiment
    OUT/<name>/confirm/                 the confirmed comparison (with its own report)
    OUT/<name>/report.md, report.html, figures/sensitivity_*.png
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import yaml
from pydantic import TypeAdapter, ValidationError

from rlkit.compare.experiment import (
    ExperimentFile,
    ParamRange,
    ParamSpec,
    PlannedRun,
    TuneSection,
    Variant,
    load_experiment,
    plan_runs,
    read_experiment,
    run_name,
    task_label,
    variants,
)
from rlkit.compare.logs import RunLog, load_run
from rlkit.compare.runner import record_failure
from rlkit.compare.summary import Summary
from rlkit.errors import ConfigError, did_you_mean
from rlkit.metrics import MetricInfo
from rlkit.plugins import PluginManager

Echo = Callable[[str], None]
TrialState = Literal["complete", "failed", "running"]

TUNE_DIR = "tune"
TRIALS_DIR = "trials"
JOURNAL = "optuna.journal"
SETUP = "setup.json"
TUNED = "tuned.yaml"
CONFIRM_DIR = "confirm"
#: trials per algorithm asked at once by TPE (it learns from results, so not all at once)
TPE_BATCH = 4


def _quiet(_: str) -> None:
    pass


# --------------------------------------------------------------------------- search spaces


@dataclass(frozen=True)
class Param:
    """One hyperparameter: a dotted run-config key and its space."""

    key: str
    spec: ParamSpec

    @property
    def choices(self) -> list[Any] | None:
        """The listed values of a categorical space, else None."""
        return list(self.spec) if isinstance(self.spec, list) else None

    def grid_values(self) -> list[Any]:
        """The values the grid sampler visits: the list, or ``grid`` points of the range
        (log-spaced for a log range), ends included."""
        if isinstance(self.spec, list):
            return list(self.spec)
        r = self.spec
        points = (np.geomspace(r.low, r.high, r.grid) if r.log
                  else np.linspace(r.low, r.high, r.grid))
        if r.integer:
            return sorted({int(round(v)) for v in points})
        return [float(f"{v:.6g}") for v in points]

    def suggest(self, trial: optuna.Trial, grid: bool) -> Any:
        """Draw this parameter's value for ``trial``."""
        if grid or isinstance(self.spec, list):
            return trial.suggest_categorical(self.key, self.grid_values())
        r = self.spec
        if r.integer:
            return trial.suggest_int(self.key, int(r.low), int(r.high), log=r.log)
        return trial.suggest_float(self.key, r.low, r.high, log=r.log)

    @property
    def log_scale(self) -> bool:
        """Whether the space is naturally read on a log axis."""
        if isinstance(self.spec, ParamRange):
            return self.spec.log
        nums = [v for v in self.spec if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return (len(nums) == len(self.spec) and min(nums, default=0) > 0
                and max(nums) / min(nums) >= 10)

    def describe(self, grid: bool) -> str:
        """The space in words (with the grid points when the grid sampler is used)."""
        if isinstance(self.spec, list):
            return "one of " + ", ".join(map(str, self.spec))
        r = self.spec
        kind = ("log-uniform" if r.log else "uniform") + (" integer" if r.integer else "")
        text = f"{kind} in [{r.low:g}, {r.high:g}]"
        if grid:
            text += f"; grid {', '.join(map(str, self.grid_values()))}"
        return text


@dataclass(frozen=True)
class SearchSpace:
    """One algorithm entry's space: where it came from and its hyperparameters."""

    label: str
    algorithm: str
    #: the entry's own overrides (``set:``), kept under every trial
    base: Mapping[str, Any]
    params: tuple[Param, ...]
    source: str

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space."""
        return {p.key: p.grid_values() for p in self.params}

    @property
    def grid_size(self) -> int:
        """Points in the grid (the product of each parameter's grid)."""
        return math.prod(len(v) for v in self.grid().values())

    def variant(self, number: int, params: Mapping[str, Any]) -> Variant:
        """Trial ``number`` as an arm of the grid: the entry's overrides plus ``params``."""
        return Variant(self.algorithm, self.label, {**self.base, **params},
                       f"{self.label}__t{number:03d}")


_SPEC = TypeAdapter(dict[str, ParamSpec])


def _read_spaces_file(exp: ExperimentFile, path: Path) -> tuple[dict[str, Any], str]:
    tune = exp.tune
    assert tune is not None
    if tune.spaces_file is None:
        return {}, ""
    file = (path.parent / tune.spaces_file)
    if not file.is_file():
        raise ConfigError(f"{path}: tune.spaces_file '{tune.spaces_file}' does not exist "
                          f"(looked for {file}; the path is relative to the experiment file).")
    data = yaml.safe_load(file.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of algorithm name → search space.")
    return data, str(file)


def _params(raw: Any, where: str) -> tuple[Param, ...]:
    try:
        parsed = _SPEC.validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"][:1])
        raise ConfigError(f"{where}: '{key}': {err['msg']} (a space is a list of values or "
                          f"{{low, high, log, integer, grid}}).") from None
    if not parsed:
        raise ConfigError(f"{where}: the search space is empty.")
    return tuple(Param(k, v) for k, v in parsed.items())


def resolve_spaces(exp: ExperimentFile, path: str | Path) -> list[SearchSpace]:
    """Each algorithm entry's space: ``tune.spaces[label]``, ``tune.spaces[name]``, else the
    spaces file's entry for the algorithm's name. An entry without one is an error."""
    path = Path(path)
    tune = exp.tune
    if tune is None:
        raise ConfigError(f"{path} has no 'tune:' section (see docs/comparing.md).")
    defaults, source = _read_spaces_file(exp, path)
    entries = exp.entries
    known = {e.display for e in entries} | {e.name for e in entries}
    for key in tune.spaces:
        if key not in known:
            raise ConfigError(f"{path}: tune.spaces.{key} names no algorithm entry."
                              f"{did_you_mean(key, sorted(known))}")
    out = []
    for entry in entries:
        if entry.sweep:
            raise ConfigError(f"{path}: algorithm '{entry.display}' has a sweep; when tuning, "
                              f"put the values in tune.spaces.{entry.display} instead.")
        if entry.display in tune.spaces or entry.name in tune.spaces:
            key = entry.display if entry.display in tune.spaces else entry.name
            raw, where = tune.spaces[key], f"{path}: tune.spaces.{key}"
            src = "experiment file"
        elif entry.name in defaults:
            raw, where, src = defaults[entry.name], f"{source}: {entry.name}", source
        else:
            raise ConfigError(
                f"{path}: no search space for '{entry.display}': add tune.spaces."
                f"{entry.display} (e.g. {{algorithm.lr: [1.0e-4, 3.0e-4, 1.0e-3]}})"
                + (f" or an entry '{entry.name}' in {source}" if source else
                   " or a tune.spaces_file with an entry for it") + ".")
        out.append(SearchSpace(entry.display, entry.name, dict(entry.set),
                               _params(raw, where), src))
    return out


def trials_per_algorithm(tune: TuneSection, spaces: Sequence[SearchSpace], path: str | Path
                         ) -> int:
    """The one trial budget every algorithm gets; for the grid sampler, every grid must
    have that many points."""
    if tune.sampler != "grid":
        if tune.trials is None:
            raise ConfigError(f"{path}: tune.trials is required with sampler "
                              f"'{tune.sampler}' (trials per algorithm, the same for all).")
        return tune.trials
    sizes = {s.label: s.grid_size for s in spaces}
    n = tune.trials or max(sizes.values())
    unequal = {label: size for label, size in sizes.items() if size != n}
    if unequal:
        listed = ", ".join(f"{label}: {size}" for label, size in sizes.items())
        raise ConfigError(
            f"{path}: the grid sampler runs every point of each algorithm's grid, and every "
            f"algorithm must get the same number of trials ({n}); the grids have {listed} "
            f"points. Make them equal (a range's `grid:` sets its points) or use sampler "
            f"random with trials: N.")
    return n


# --------------------------------------------------------------------------- objective


@dataclass(frozen=True)
class Objective:
    """The declared objective, resolved against the metric catalogue."""

    metric: MetricInfo
    summary: Literal["final", "auc"]

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """Optuna's direction, from the metric's declared goal."""
        return "minimize" if self.metric.goal == "min" else "maximize"

    def of_run(self, run: RunLog) -> float:
        """The objective of one run: final value, or normalised AUC against samples."""
        return run.final(self.metric.key) if self.summary == "final" else run.auc(
            self.metric.key)

    def describe(self) -> str:
        """E.g. ``final eval/gold_reward (maximised)``."""
        what = ("final" if self.summary == "final"
                else "area under the learning curve (normalised, against samples) of")
        return f"{what} {self.metric.key} ({self.direction[:-1]}ed)"


def resolve_objective(exp: ExperimentFile, catalog: Mapping[str, MetricInfo],
                      path: str | Path) -> Objective:
    """The objective of ``exp.tune``: an evaluation metric with a direction."""
    assert exp.tune is not None
    key = exp.tune.objective.metric
    minfo = catalog.get(key)
    if minfo is None or not minfo.eval:
        ranked = sorted(k for k, m in catalog.items() if m.eval and m.goal != "none")
        raise ConfigError(f"{path}: tune.objective.metric '{key}' is not a declared evaluation "
                          f"metric.{did_you_mean(key, ranked)} Choose one of: "
                          f"{', '.join(ranked)}.")
    if minfo.goal == "none":
        raise ConfigError(f"{path}: tune.objective.metric '{key}' has no direction (goal "
                          f"'none'): nothing to maximise or minimise.")
    return Objective(minfo, exp.tune.objective.summary)


# --------------------------------------------------------------------------- trials


@dataclass
class TrialRecord:
    """One trial as stored and as its runs logged it."""

    label: str
    number: int
    params: dict[str, Any]
    state: TrialState
    #: the objective: mean over the trial's runs (NaN unless complete)
    value: float
    #: per run (task, seed): the run's objective
    run_values: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class TuneResult:
    """What :func:`tune` did: the set-up, every trial, the choices and the confirmation."""

    directory: Path
    source: Path
    experiment: ExperimentFile
    spaces: list[SearchSpace]
    trials_per_algorithm: int
    objective: Objective
    trials: list[TrialRecord]
    chosen: dict[str, TrialRecord]
    tuned_path: Path
    confirm_dir: Path
    confirmation: Summary | None = None
    report: dict[str, Path] = field(default_factory=dict)

    @property
    def tuning_seeds(self) -> list[int]:
        """Seeds every trial ran on."""
        assert self.experiment.tune is not None
        return list(self.experiment.tune.seeds)

    @property
    def confirm_seeds(self) -> list[int]:
        """Fresh seeds of the confirmed comparison (disjoint from :attr:`tuning_seeds`)."""
        return list(self.experiment.seeds)

    def trials_of(self, label: str) -> list[TrialRecord]:
        """One algorithm's trials by number."""
        return sorted((t for t in self.trials if t.label == label), key=lambda t: t.number)


class _Grid(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` after the last point: the trial
    budget is counted here, and ``stop`` outside ``optimize`` is an error."""

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                    state: optuna.trial.TrialState, values: Sequence[float] | None) -> None:
        return None


def _sampler(tune: TuneSection, space: SearchSpace, index: int, started: int, n_trials: int
             ) -> optuna.samplers.BaseSampler:
    """A fresh sampler per round, seeded by the algorithm and the trials already started,
    so a resumed tuning draws reproducibly without replaying the first draws."""
    seed = tune.sampler_seed * 1_000_003 + index * 10_007 + started
    if tune.sampler == "grid":
        return _Grid(space.grid(), seed=tune.sampler_seed + index)
    if tune.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, n_trials // 3))
    return optuna.samplers.RandomSampler(seed=seed)


def _study(storage: optuna.storages.BaseStorage, exp: ExperimentFile, space: SearchSpace,
           objective: Objective, sampler: optuna.samplers.BaseSampler | None = None
           ) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name=f"{exp.name}:{space.label}",
                               direction=objective.direction, sampler=sampler,
                               load_if_exists=True)


def _storage(tune_dir: Path) -> optuna.storages.BaseStorage:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    tune_dir.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(tune_dir / JOURNAL)))


def _setup(exp: ExperimentFile, spaces: Sequence[SearchSpace], n_trials: int,
           objective: Objective, overrides: Sequence[str]) -> dict[str, Any]:
    assert exp.tune is not None
    return {
        "sampler": exp.tune.sampler, "sampler_seed": exp.tune.sampler_seed,
        "trials": n_trials, "seeds": exp.tune.seeds, "budget": exp.budget,
        "objective": [objective.metric.key, objective.summary],
        "tasks": exp.task_list, "shared": exp.shared, "overrides": list(overrides),
        "spaces": {s.label: {"algorithm": s.algorithm, "base": dict(s.base),
                             "params": {p.key: _jsonable(p.spec) for p in s.params}}
                   for s in spaces},
    }


def _jsonable(spec: ParamSpec) -> Any:
    return spec.model_dump() if isinstance(spec, ParamRange) else list(spec)


def _check_setup(tune_dir: Path, setup: dict[str, Any]) -> None:
    """Refuse to resume trials that were run under another set-up (their values would mean
    something else); write the set-up on the first run."""
    path = tune_dir / SETUP
    text = json.dumps(setup, sort_keys=True, indent=1, default=str)
    if path.is_file():
        if json.loads(path.read_text()) != json.loads(text):
            raise ConfigError(
                f"'{tune_dir}' holds trials of a different tuning set-up (sampler, trials, "
                f"seeds, objective, budget, spaces or --set changed since). Resuming would mix "
                f"them: delete '{tune_dir}' to start over, or use another --out.")
        return
    tune_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _trial_runs(exp: ExperimentFile, space: SearchSpace, number: int, seeds: Sequence[int]
                ) -> list[str]:
    stem = space.variant(number, {}).stem
    return [run_name(stem, task_label(t), s) for t in exp.task_list for s in seeds]


def _evaluate(objective: Objective, run_dirs: list[Path]
              ) -> tuple[float, dict[str, float], str | None]:
    """(objective, per-run values, error): the mean over the runs when every run finished
    and logged the metric, else NaN and why not."""
    values: dict[str, float] = {}
    for d in run_dirs:
        if not d.is_dir():
            return math.nan, values, f"{d.name}: never ran"
        run = load_run(d)
        if not run.finished:
            return math.nan, values, f"{d.name}: {run.state}" + (
                f" — {run.error}" if run.error else "")
        value = objective.of_run(run)
        if not math.isfinite(value):
            return math.nan, values, f"{d.name}: logged no {objective.metric.key}"
        values[d.name] = value
    return float(np.mean(list(values.values()))), values, None


@dataclass
class _Pending:
    space: SearchSpace
    number: int
    params: dict[str, Any]
    planned: list[PlannedRun] = field(default_factory=list)


def tune(experiment: str | Path, overrides: Sequence[str], out: Path, *, pm: PluginManager,
         plugin_files: Sequence[str] = (), workers: int | None = 1, executor: str = "local",
         echo: Echo = _quiet, report: bool = True) -> TuneResult:
    """Tune, choose, write ``tuned.yaml``, confirm on fresh seeds and write the report.

    Resumable: rerun the same command after an interruption; completed trials and finished
    runs are kept. ``overrides`` (``KEY=VALUE``) apply to every trial and confirmation run.
    """
    from rlkit.compare.api import metric_catalog, prepare_tasks, run_planned

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = Path(experiment)
    exp, _ = read_experiment(path)
    if exp.tune is None:
        raise ConfigError(f"{path} has no 'tune:' section: add one (docs/comparing.md) or run "
                          f"'rlkit compare {path}'.")
    tune_cfg = exp.tune
    algorithms = pm.registry.algorithms
    spaces = resolve_spaces(exp, path)
    n_trials = trials_per_algorithm(tune_cfg, spaces, path)
    objective = resolve_objective(exp, metric_catalog(pm), path)
    grid = tune_cfg.sampler == "grid"
    # validate before anything runs: the confirmation grid, and one trial per space
    plan_runs(exp, path, variants(exp), exp.seeds, list(overrides), algorithms)
    probes = [plan_runs(exp, path, [s.variant(0, {p.key: p.grid_values()[0] for p in s.params})],
                        tune_cfg.seeds[:1], list(overrides), algorithms) for s in spaces]
    exp_dir = out / exp.name
    tune_dir, trials_dir = exp_dir / TUNE_DIR, exp_dir / TUNE_DIR / TRIALS_DIR
    _check_setup(tune_dir, _setup(exp, spaces, n_trials, objective, overrides))
    storage = _storage(tune_dir)
    batch = tune_cfg.batch or (TPE_BATCH if tune_cfg.sampler == "tpe" else n_trials)
    echo(f"{exp.name}: tuning {len(spaces)} algorithms × {n_trials} trials "
         f"({tune_cfg.sampler}) × {len(tune_cfg.seeds)} tuning seeds; objective "
         f"{objective.describe()} → {exp_dir}")
    prepare_tasks([p for probe in probes for p in probe], pm, echo)

    while True:
        pending: list[_Pending] = []
        for index, space in enumerate(spaces):
            study = _study(storage, exp, space, objective)
            trials = study.get_trials(deepcopy=False)
            # left running by an interrupted invocation: finish them (finished runs are kept)
            keys = {p.key for p in space.params}
            for t in trials:
                if t.state != optuna.trial.TrialState.RUNNING:
                    continue
                if set(t.params) == keys:
                    pending.append(_Pending(space, t.number, dict(t.params)))
                else:  # interrupted between ask and its draws: nothing ran, nothing to keep
                    study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            started = len(trials)
            if started < n_trials:
                study = _study(storage, exp, space, objective,
                               _sampler(tune_cfg, space, index, started, n_trials))
                for _ in range(min(batch, n_trials - started)):
                    trial = study.ask()
                    values = {p.key: p.suggest(trial, grid) for p in space.params}
                    pending.append(_Pending(space, trial.number, values))
        if not pending:
            break
        runnable = []
        for item in pending:
            try:
                item.planned = plan_runs(exp, path, [item.space.variant(item.number, item.params)],
                                         tune_cfg.seeds, list(overrides), algorithms)
                runnable += item.planned
            except ConfigError as exc:  # this trial's values are invalid: it fails alone
                for name in _trial_runs(exp, item.space, item.number, tune_cfg.seeds):
                    record_failure(trials_dir / name, {"name": name, "label": item.space.label,
                                                       "algorithm": {"name": item.space.algorithm}},
                                   f"ConfigError: {exc}")
        echo(f"trials {', '.join(f'{p.space.label}#{p.number}' for p in pending)}: "
             f"{len(runnable)} runs")
        run_planned(runnable, trials_dir, pm=pm, plugin_files=plugin_files, workers=workers,
                    executor=executor, echo=echo, prepare=False)
        for item in pending:
            names = _trial_runs(exp, item.space, item.number, tune_cfg.seeds)
            value, _, error = _evaluate(objective, [trials_dir / n for n in names])
            study = _study(storage, exp, item.space, objective)
            if error is None:
                study.tell(item.number, value)
            else:
                study.tell(item.number, state=optuna.trial.TrialState.FAIL)
                echo(f"  trial {item.space.label}#{item.number} failed: {error}")

    records = collect_trials(exp, spaces, storage, objective, trials_dir)
    chosen = choose(records, objective)
    tuned_path = write_tuned(exp, path, exp_dir, spaces, chosen, objective, n_trials, overrides)
    result = TuneResult(exp_dir, path, exp, spaces, n_trials, objective, records, chosen,
                        tuned_path, exp_dir / CONFIRM_DIR)
    missing = [s.label for s in spaces if s.label not in chosen]
    if missing:
        echo(f"no trial of {', '.join(missing)} succeeded: left out of {tuned_path.name}")
    if chosen:
        echo(f"confirming on fresh seeds {exp.seeds} → {result.confirm_dir}")
        _, planned = load_experiment(tuned_path, algorithms)
        run_planned(planned, result.confirm_dir, pm=pm, plugin_files=plugin_files,
                    workers=workers, executor=executor, echo=echo, prepare=False)
    if report:
        from rlkit.compare.tune_report import write_tune_report

        result.report = write_tune_report(result, pm)
    return result


def collect_trials(exp: ExperimentFile, spaces: Sequence[SearchSpace],
                   storage: optuna.storages.BaseStorage, objective: Objective,
                   trials_dir: Path) -> list[TrialRecord]:
    """Every stored trial with its runs' objective values (from their logs)."""
    assert exp.tune is not None
    out = []
    for space in spaces:
        study = _study(storage, exp, space, objective)
        for t in study.get_trials(deepcopy=False):
            names = _trial_runs(exp, space, t.number, exp.tune.seeds)
            _, values, error = _evaluate(objective, [trials_dir / n for n in names])
            state: TrialState = (
                "complete" if t.state == optuna.trial.TrialState.COMPLETE
                else "running" if t.state == optuna.trial.TrialState.RUNNING else "failed")
            value = float(t.value) if state == "complete" and t.value is not None else math.nan
            params = {p.key: t.params[p.key] for p in space.params if p.key in t.params}
            out.append(TrialRecord(space.label, t.number, params, state, value, values,
                                   error if state != "complete" else None))
    return out


def choose(records: Sequence[TrialRecord], objective: Objective) -> dict[str, TrialRecord]:
    """Per algorithm the best complete trial (the lowest number on ties)."""
    sign = -1.0 if objective.direction == "minimize" else 1.0
    best: dict[str, TrialRecord] = {}
    for r in sorted(records, key=lambda r: r.number):
        if r.state != "complete":
            continue
        if r.label not in best or sign * r.value > sign * best[r.label].value:
            best[r.label] = r
    return best


def _override_values(overrides: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in overrides:
        key, _, raw = item.partition("=")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def write_tuned(exp: ExperimentFile, source: Path, exp_dir: Path, spaces: Sequence[SearchSpace],
                chosen: Mapping[str, TrialRecord], objective: Objective, n_trials: int,
                overrides: Sequence[str]) -> Path:
    """``tuned.yaml``: the experiment with each algorithm's chosen values in its ``set``,
    no ``tune`` section, runnable with ``rlkit compare``."""
    assert exp.tune is not None
    extra = _override_values(overrides)
    algorithms = []
    for space in spaces:
        if space.label not in chosen:
            continue
        algorithms.append({"name": space.algorithm, "label": space.label,
                           "set": {**dict(space.base), **chosen[space.label].params, **extra}})
    data: dict[str, Any] = {
        "name": f"{exp.name}-tuned",
        "description": (exp.description + " " if exp.description else "") +
        f"Values chosen by rlkit tune {source}.",
        "seeds": list(exp.seeds),
    }
    if exp.budget:
        data["budget"] = dict(exp.budget)
    if exp.tasks:
        data["tasks"] = list(exp.tasks)
    elif exp.task is not None:
        data["task"] = dict(exp.task)
    if exp.shared:
        data["shared"] = exp.shared
    data["algorithms"] = algorithms
    header = (
        f"# Written by `rlkit tune {source}`: each algorithm's values chosen by the "
        f"{exp.tune.sampler} sampler, {n_trials} trials per algorithm on tuning seeds "
        f"{list(exp.tune.seeds)}, objective {objective.describe()}.\n"
        f"# The seeds below are fresh (never used for selection). Run: rlkit compare "
        f"{exp_dir / TUNED}\n")
    skipped = [s.label for s in spaces if s.label not in chosen]
    if skipped:
        header += f"# Left out (no trial succeeded): {', '.join(skipped)}\n"
    path = exp_dir / TUNED
    exp_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


__all__ = ["Objective", "Param", "SearchSpace", "TrialRecord", "TuneResult", "choose",
           "collect_trials", "resolve_objective", "resolve_spaces", "trials_per_algorithm",
           "tune", "write_tuned"]
