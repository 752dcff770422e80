"""Read an experiment directory back from its JSONL logs.

The JSONL files are the source of truth for every comparison (offline wandb runs cannot be
read back), so this module is the only place that knows the on-disk layout::

    EXP/<run-name>/config.yaml     resolved config: name, seed, algorithm.name, task.name, label
    EXP/<run-name>/metrics.jsonl   one JSON object per training step
    EXP/<run-name>/status.json     {"state": "finished" | "failed" | "running", "error", "wall_s"}

A directory holding only ``status.json`` is a run that failed before it could log anything
(a bad config, a model that would not load); it is listed, never silently dropped.

Everything downstream (statistics, plots, the report) works on the tidy :class:`Experiment`.
Metric names and the x-axes come from :mod:`rlkit.metrics`; the few key *patterns* the
evaluation adds to a metric's name (selection split, evaluation-seed spread) are spelled by
:func:`rlkit.metrics.select_key` and :func:`rlkit.metrics.eval_std_key`, as the engine writes
them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from rlkit.compare.stats import normalized_auc
from rlkit.errors import RlkitError
from rlkit.metrics import SAMPLES, Goal, eval_std_key, select_key

#: Any of these files makes a directory a run directory.
RUN_FILES = ("config.yaml", "metrics.jsonl", "status.json")

FINISHED = "finished"
FAILED = "failed"
RUNNING = "running"
UNKNOWN = "unknown"

#: How a run's series becomes one score: its last value, its best value over the run, its
#: value where the selection-split twin is best, or its normalised area under the curve.
How = Literal["final", "best", "selected", "auc"]


def eval_std_keys(key: str) -> tuple[str, ...]:
    """Keys that may carry the spread of ``key`` across evaluation seeds within one
    evaluation: ``eval/<name>/eval_std`` (the engine's), ``eval/<name>_seed_std`` (older)."""
    return (eval_std_key(key), f"{key}_seed_std")


@dataclass
class RunLog:
    """One run as it was logged: identity, outcome, and every metric row.

    ``rows`` keep the JSONL objects as written (a key absent from a row means "not logged at
    that step", e.g. ``eval/*`` between evaluations), so no value is invented here.
    """

    name: str
    path: Path
    label: str
    algorithm: str
    seed: int
    task: str
    state: str
    error: str | None
    wall_s: float | None
    config: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped_lines: int = 0

    @property
    def finished(self) -> bool:
        """True when the run's status says it completed (only those enter statistics)."""
        return self.state == FINISHED

    def has(self, key: str) -> bool:
        """Whether any row logged a finite value for ``key``."""
        return any(_finite(row.get(key)) for row in self.rows)

    def keys(self) -> set[str]:
        """Every metric key logged at least once."""
        out: set[str] = set()
        for row in self.rows:
            out.update(row)
        return out

    def series(self, key: str, x: str = SAMPLES) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) for the rows that carry both keys with finite values, sorted by x.

        Rows without ``key`` are dropped rather than filled, so an eval metric logged every
        N steps yields exactly the evaluation points.
        """
        pairs = [
            (float(row[x]), float(row[key]))
            for row in self.rows
            if _finite(row.get(x)) and _finite(row.get(key))
        ]
        if not pairs:
            return np.empty(0), np.empty(0)
        arr = np.asarray(sorted(pairs, key=lambda p: p[0]), dtype=float)
        return arr[:, 0], arr[:, 1]

    def values(self, key: str) -> np.ndarray:
        """All finite values of ``key`` in logging order."""
        return np.asarray([float(r[key]) for r in self.rows if _finite(r.get(key))], dtype=float)

    def final(self, key: str) -> float:
        """The last logged value of ``key`` (the final evaluation for ``eval/*``); NaN if none."""
        vals = self.values(key)
        return float(vals[-1]) if vals.size else math.nan

    def best(self, key: str, goal: Goal = "max") -> float:
        """The best logged value of ``key`` (max, or min for ``goal='min'``); NaN if none."""
        vals = self.values(key)
        if not vals.size:
            return math.nan
        return float(vals.min() if goal == "min" else vals.max())

    def selected(self, key: str, by: str, goal: Goal = "max") -> float:
        """``key`` at the row where ``by`` is best (first such row on ties); NaN when no row
        carries both. With ``by`` measured on prompts disjoint from ``key``'s, the choice of
        step is not fitted to the noise of the number reported."""
        pairs = [(float(r[by]), float(r[key])) for r in self.rows
                 if _finite(r.get(by)) and _finite(r.get(key))]
        if not pairs:
            return math.nan
        sign = -1.0 if goal == "min" else 1.0
        best = max(range(len(pairs)), key=lambda i: (sign * pairs[i][0], -i))
        return pairs[best][1]

    def auc(self, key: str, x: str = SAMPLES) -> float:
        """Normalised area under ``key`` against ``x`` (:func:`~rlkit.compare.stats.normalized_auc`)."""
        return normalized_auc(*self.series(key, x))

    def score(self, key: str, how: How = "final", goal: Goal = "max") -> float:
        """One number for this run (see :data:`How`); ``"selected"`` falls back to NaN when
        the run has no selection-split twin of ``key``."""
        if how == "final":
            return self.final(key)
        if how == "best":
            return self.best(key, goal)
        if how == "selected":
            return self.selected(key, select_key(key), goal)
        return self.auc(key)

    def eval_std(self, key: str) -> float:
        """The spread of ``key`` across evaluation seeds at the last evaluation; NaN if the
        engine did not log one."""
        for k in eval_std_keys(key):
            if self.has(k):
                return self.final(k)
        return math.nan

    @property
    def eval_seeds(self) -> int | None:
        """How many evaluation seeds each evaluation averaged (``eval.seeds`` in the run's
        config), or None when the config does not say."""
        section = self.config.get("eval")
        seeds = section.get("seeds") if isinstance(section, dict) else None
        return len(seeds) if isinstance(seeds, list) and seeds else None


@dataclass
class Experiment:
    """All runs of one experiment directory, grouped by display label.

    Runs that share a label differ only in seed (and task), which is what makes a group a
    sample of that algorithm's performance.
    """

    path: Path
    runs: list[RunLog]

    @property
    def name(self) -> str:
        """The experiment's name: its directory name."""
        return self.path.name

    @property
    def finished(self) -> list[RunLog]:
        """Runs whose status is ``finished``: the only ones statistics are computed on."""
        return [r for r in self.runs if r.finished]

    @property
    def failed(self) -> list[RunLog]:
        """Runs whose status is ``failed`` (listed with their error in the report)."""
        return [r for r in self.runs if r.state == FAILED]

    @property
    def unfinished(self) -> list[RunLog]:
        """Runs still running or without a status file (excluded from statistics)."""
        return [r for r in self.runs if r.state not in (FINISHED, FAILED)]

    @property
    def labels(self) -> list[str]:
        """Display labels in first-seen order of the sorted run directories (stable colours)."""
        return list(dict.fromkeys(r.label for r in self.runs))

    @property
    def tasks(self) -> list[str]:
        """Task names in first-seen order."""
        return list(dict.fromkeys(r.task for r in self.runs))

    def groups(self, finished_only: bool = True) -> dict[str, list[RunLog]]:
        """Runs by label, each list sorted by (task, seed); labels with no run left are kept
        out so that every group is non-empty."""
        pool = self.finished if finished_only else self.runs
        out: dict[str, list[RunLog]] = {}
        for label in self.labels:
            runs = sorted((r for r in pool if r.label == label), key=lambda r: (r.task, r.seed))
            if runs:
                out[label] = runs
        return out

    def has(self, key: str, finished_only: bool = True) -> bool:
        """Whether any (finished) run logged ``key``."""
        pool = self.finished if finished_only else self.runs
        return any(r.has(key) for r in pool)

    def score_matrix(
        self, label: str, key: str, how: How = "final", goal: Goal = "max"
    ) -> np.ndarray:
        """Per-run scores of one label as a ``[n_runs, n_tasks]`` array (rliable layout).

        Rows are seeds, columns are the experiment's tasks; a missing (task, seed) cell, or a
        run that never logged ``key``, is NaN so that the statistics can drop it. ``how`` is
        one of :data:`How` (:meth:`RunLog.score`).
        """
        runs = self.groups().get(label, [])
        tasks = self.tasks
        seeds = sorted({r.seed for r in runs})
        out = np.full((len(seeds), len(tasks)), np.nan)
        for r in runs:
            out[seeds.index(r.seed), tasks.index(r.task)] = r.score(key, how, goal)
        return out

    def scores(self, key: str, how: How = "final", goal: Goal = "max") -> dict[str, np.ndarray]:
        """:meth:`score_matrix` for every label with finished runs."""
        return {label: self.score_matrix(label, key, how, goal) for label in self.groups()}


def load_experiment(exp_dir: Path | str) -> Experiment:
    """Load every run directory under ``exp_dir``.

    A run directory is any direct child holding ``config.yaml``, ``metrics.jsonl`` or
    ``status.json``; others (``figures/``, ``wandb/``) are ignored. Raises :class:`RlkitError` when the
    directory is missing or holds no run, naming what was expected.
    """
    exp = Path(exp_dir)
    if not exp.is_dir():
        raise RlkitError(
            f"Experiment directory '{exp}' does not exist. Pass the directory that "
            f"'rlkit compare' wrote (one sub-directory per run)."
        )
    run_dirs = [
        d
        for d in sorted(exp.iterdir())
        if d.is_dir() and any((d / f).is_file() for f in RUN_FILES)
    ]
    if not run_dirs:
        raise RlkitError(
            f"No runs found in '{exp}': expected sub-directories holding config.yaml and "
            f"metrics.jsonl (EXP/<run-name>/metrics.jsonl). Run 'rlkit compare EXPERIMENT.yaml' "
            f"first, or point at the directory it printed."
        )
    return Experiment(path=exp, runs=[load_run(d) for d in run_dirs])


def load_run(run_dir: Path) -> RunLog:
    """Load one run directory; a missing status file reads as state ``unknown``."""
    config = _read_config(run_dir / "config.yaml")
    algo = config.get("algorithm") or {}
    task = config.get("task") or {}
    algorithm = str(algo.get("name", "?")) if isinstance(algo, dict) else str(algo)
    task_name = str(task.get("name", "?")) if isinstance(task, dict) else str(task)
    label = config.get("label") or algorithm
    status = _read_status(run_dir / "status.json")
    rows, skipped = _read_jsonl(run_dir / "metrics.jsonl")
    seed = config.get("seed", 0)
    return RunLog(
        name=str(config.get("name") or run_dir.name),
        path=run_dir,
        label=str(label),
        algorithm=algorithm,
        seed=_int_or_zero(seed),
        task=task_name,
        state=str(status.get("state", UNKNOWN)),
        error=status.get("error") or None,
        wall_s=_float_or_none(status.get("wall_s")),
        config=config,
        rows=rows,
        skipped_lines=skipped,
    )


def _read_config(path: Path) -> dict[str, Any]:
    """The run config, or ``{}`` when absent; a malformed file is a user-facing error."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RlkitError(f"Cannot parse run config '{path}': {exc}") from exc
    return data if isinstance(data, dict) else {}


def _read_status(path: Path) -> dict[str, Any]:
    """The status object; unreadable or absent files read as ``{}`` (state unknown)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Rows of a metrics file and how many lines were skipped.

    A run killed mid-write leaves a truncated last line; it is skipped. A malformed line
    elsewhere means the file was damaged, which the user must hear about.
    """
    if not path.is_file():
        return [], 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows: list[dict[str, Any]] = []
    skipped = 0
    for lineno, line in _numbered_nonblank(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if lineno == _last_nonblank(lines):
                skipped += 1  # truncated by a killed run
                continue
            raise RlkitError(
                f"{path}:{lineno}: not valid JSON ({exc.msg}). Each line of metrics.jsonl "
                f"must be one JSON object; only a truncated last line is tolerated."
            ) from exc
        if isinstance(row, dict):
            rows.append(row)
        else:
            skipped += 1
    return rows, skipped


def _numbered_nonblank(lines: list[str]) -> Iterator[tuple[int, str]]:
    for i, line in enumerate(lines, start=1):
        if line.strip():
            yield i, line


def _last_nonblank(lines: list[str]) -> int:
    for i in range(len(lines), 0, -1):
        if lines[i - 1].strip():
            return i
    return 0


def _finite(value: Any) -> bool:
    """True for real numbers that are finite (bools and strings are not metrics)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_or_zero(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _float_or_none(value: Any) -> float | None:
    return float(value) if _finite(value) else None
