"""Read an experiment directory back from its JSONL logs.

The JSONL files are the source of truth for every comparison (offline wandb runs cannot be
read back), so this module is the only place that knows the on-disk layout::

    EXP/<run-name>/config.yaml     resolved config: name, seed, algorithm.name, task.name, label
    EXP/<run-name>/metrics.jsonl   one JSON object per training step
    EXP/<run-name>/status.json     {"state": "finished" | "failed" | "running", "error", "wall_s"}

Everything downstream (statistics, plots, the report) works on the tidy :class:`Experiment`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rlkit.errors import RlkitError

#: x-axes every run logs; the engine writes them on every row.
X_STEP = "train/step"
X_SAMPLES = "train/samples"
X_WALL = "train/wall_s"


@dataclass(frozen=True)
class MetricInfo:
    """How to present a logged metric: a title, the unit for axis labels, and its direction.

    ``goal`` is ``"max"`` or ``"min"`` when a higher (lower) value is better and the metric
    may be ranked, and ``"none"`` when it describes rather than scores (KL to the reference
    is a cost paid for reward, not a goal in itself; response length is a symptom).
    """

    key: str
    title: str
    unit: str
    goal: str


#: The evaluation metrics a report covers, in report order (canonical names, DESIGN.md).
EVAL_METRICS: dict[str, MetricInfo] = {
    m.key: m
    for m in (
        MetricInfo("eval/reward", "Eval reward (proxy reward model)", "RM score", "max"),
        MetricInfo("eval/gold_reward", "Eval gold reward", "gold score", "max"),
        MetricInfo("eval/kl", "Eval KL to reference", "nats / response", "none"),
        MetricInfo("eval/response_length", "Eval response length", "tokens", "none"),
    )
}

#: x-axes the learning curves are drawn against: key → axis label with unit.
X_AXES: dict[str, str] = {X_SAMPLES: "training samples", X_WALL: "wall time (s)"}

FINISHED = "finished"
FAILED = "failed"
RUNNING = "running"
UNKNOWN = "unknown"


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

    def series(self, key: str, x: str = X_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
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

    def best(self, key: str, goal: str = "max") -> float:
        """The best logged value of ``key`` (max, or min for ``goal='min'``); NaN if none."""
        vals = self.values(key)
        if not vals.size:
            return math.nan
        return float(vals.max() if goal == "max" else vals.min())


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
        self, label: str, key: str, how: str = "final", goal: str = "max"
    ) -> np.ndarray:
        """Per-run scores of one label as a ``[n_runs, n_tasks]`` array (rliable layout).

        Rows are seeds, columns are the experiment's tasks; a missing (task, seed) cell, or a
        run that never logged ``key``, is NaN so that the statistics can drop it. ``how`` is
        ``"final"`` (last logged value) or ``"best"`` (max or min over the run, per ``goal``).
        """
        runs = self.groups().get(label, [])
        tasks = self.tasks
        seeds = sorted({r.seed for r in runs})
        out = np.full((len(seeds), len(tasks)), np.nan)
        for r in runs:
            value = r.final(key) if how == "final" else r.best(key, goal)
            out[seeds.index(r.seed), tasks.index(r.task)] = value
        return out

    def scores(self, key: str, how: str = "final", goal: str = "max") -> dict[str, np.ndarray]:
        """:meth:`score_matrix` for every label with finished runs."""
        return {label: self.score_matrix(label, key, how, goal) for label in self.groups()}


def load_experiment(exp_dir: Path | str) -> Experiment:
    """Load every run directory under ``exp_dir``.

    A run directory is any direct child holding ``config.yaml`` or ``metrics.jsonl``;
    others (``figures/``, ``wandb/``) are ignored. Raises :class:`RlkitError` when the
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
        if d.is_dir() and ((d / "config.yaml").is_file() or (d / "metrics.jsonl").is_file())
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
