"""The numbers of a comparison report, computed from an experiment's JSONL logs.

:func:`summarize` turns an :class:`~rlkit.compare.logs.Experiment` into a :class:`Summary`:
typed tables of per-algorithm statistics, pairwise tests, costs and the split of evaluation
noise from training noise. Nothing here formats or draws; :mod:`rlkit.compare.report` lays
the numbers out and :mod:`rlkit.compare.render` writes them.

Which metrics appear is decided by the metric catalogue (:func:`rlkit.metrics.catalogue`):
every evaluation metric a run logged, canonical or declared by a plugin, gets a table; those
with a direction (``goal`` "max" or "min") are ranked and compared pairwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rlkit.compare.logs import Experiment, How, RunLog
from rlkit.compare.stats import (
    ALPHA,
    DEFAULT_RESAMPLES,
    RECOMMENDED_SEEDS,
    Aggregate,
    PairComparison,
    aggregate,
    few_seeds_warning,
    mean_std,
    pairwise_comparisons,
)
from rlkit.metrics import (
    FLOPS,
    OPTIMIZER_STEPS,
    PERF_PEAK_MEMORY,
    PERF_SAMPLES_PER_S,
    SAMPLES,
    TOKENS,
    WALL,
    MetricInfo,
    catalogue,
    ranked_eval_metrics,
    select_key,
)

#: The cost table's columns, in order: budgets spent (final values) and the memory peak.
COST_KEYS: tuple[str, ...] = (SAMPLES, OPTIMIZER_STEPS, TOKENS, FLOPS, WALL, PERF_PEAK_MEMORY)

#: Where a row's "best" value comes from.
BestSource = Literal["selection split", "in-sample"]


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (ddof=1; NaN for one run) over runs."""

    mean: float
    std: float

    @classmethod
    def of(cls, values: np.ndarray | list[float]) -> Spread:
        """The spread of the finite ``values``."""
        return cls(*mean_std(values))


@dataclass(frozen=True)
class ScoreSummary:
    """One per-run score (final, best or AUC) of one algorithm summarised over its runs:
    mean ± std, and the aggregate the table ranks by (:class:`~rlkit.compare.stats.Aggregate`:
    IQM with a 95% interval at 5+ seeds, else mean or IQM with the range over seeds)."""

    spread: Spread
    aggregate: Aggregate

    @property
    def n(self) -> int:
        """Runs with a finite score."""
        return self.aggregate.n


@dataclass(frozen=True)
class MetricRow:
    """One algorithm's line in a metric table."""

    label: str
    #: value at the run's last evaluation
    final: ScoreSummary
    #: value at the best evaluation: chosen on the selection split when the logs carry it
    best: ScoreSummary
    #: normalised area under the curve against training samples (the curve's mean height)
    auc: ScoreSummary
    best_source: BestSource
    rank: int | None = None

    @property
    def n(self) -> int:
        """Runs with a final value."""
        return self.final.n


@dataclass(frozen=True)
class MetricTable:
    """Final, best and AUC of one metric for every algorithm, ranked when it has a goal."""

    info: MetricInfo
    rows: list[MetricRow]

    @property
    def ranked(self) -> bool:
        """Whether this metric has a direction and so a ranking."""
        return self.info.goal in ("max", "min")

    @property
    def leader(self) -> MetricRow | None:
        """The rank-1 row (the first of tied leaders), if ranked."""
        return next((r for r in self.rows if r.rank == 1), None)

    def indistinguishable_from_leader(self) -> list[str]:
        """Labels whose final interval (or range) overlaps the leader's: not clearly
        separated from it."""
        lead = self.leader
        if lead is None:
            return []
        return [r.label for r in self.rows
                if r.rank != 1 and r.final.aggregate.overlaps(lead.final.aggregate)]

    @property
    def best_sources(self) -> set[BestSource]:
        """Where the rows' "best" values come from (one source unless the logs differ)."""
        return {r.best_source for r in self.rows}


@dataclass(frozen=True)
class CostRow:
    """What one algorithm's runs spent: each budget's final value (memory: its peak),
    mean ± std over the finished runs, and the mean throughput."""

    label: str
    n: int
    budget: dict[str, Spread]
    samples_per_s: float


@dataclass(frozen=True)
class NoiseRow:
    """Training-seed noise against evaluation noise for one algorithm and metric.

    ``between_seed_std`` is the std over training seeds of the final value (each value
    already a mean over ``eval_seeds`` evaluation seeds); ``within_run_eval_std`` the root
    mean square over runs of the std across evaluation seeds inside one evaluation. The
    logged mean carries evaluation noise of standard error ``eval_se = within/√k``, so the
    training-seed std with that removed is ``sqrt(max(0, between² − eval_se²))``.
    """

    label: str
    metric: str
    n: int
    between_seed_std: float
    within_run_eval_std: float
    eval_seeds: int | None
    eval_se: float
    training_std: float


@dataclass
class Summary:
    """Everything the report shows, computed from the logs (no rendering here)."""

    experiment: Experiment
    catalog: dict[str, MetricInfo]
    tables: dict[str, MetricTable]
    pairwise: dict[str, list[PairComparison]]
    costs: list[CostRow]
    #: the :data:`COST_KEYS` some finished run logged (the cost table's columns)
    cost_keys: list[str]
    noise: list[NoiseRow]
    warnings: list[str] = field(default_factory=list)
    n_resamples: int = DEFAULT_RESAMPLES
    seed: int = 0

    @property
    def aggregates(self) -> list[Aggregate]:
        """Every aggregate in the tables (to word captions by what they actually hold)."""
        return [s.aggregate for t in self.tables.values() for r in t.rows
                for s in (r.final, r.best, r.auc)]

    @property
    def any_ci(self) -> bool:
        """Whether any table entry is a confidence interval (some algorithm has 5+ seeds)."""
        return any(a.interval == "ci" for a in self.aggregates)

    @property
    def any_range(self) -> bool:
        """Whether any table entry is a range over fewer than 5 seeds."""
        return any(a.interval == "range" for a in self.aggregates)

    def table(self, key: str) -> MetricTable | None:
        """The table of ``key``, if any finished run logged it."""
        return self.tables.get(key)


# --------------------------------------------------------------------------- metric tables


def _score(exp: Experiment, label: str, key: str, how: How, goal: Literal["max", "min"],
           n_resamples: int, seed: int) -> ScoreSummary:
    scores = exp.score_matrix(label, key, how, goal)
    return ScoreSummary(Spread.of(scores), aggregate(scores, n_resamples=n_resamples, seed=seed))


def _best_source(runs: list[RunLog], key: str, ranked: bool) -> BestSource:
    """Selection split when every run carries the selection twin of a ranked ``key``."""
    selectable = ranked and all(r.has(select_key(key)) for r in runs if r.has(key))
    return "selection split" if selectable else "in-sample"


def metric_table(exp: Experiment, info: MetricInfo, n_resamples: int = DEFAULT_RESAMPLES,
                 seed: int = 0) -> MetricTable:
    """One metric's table: per label final, best and AUC; ranked by the final aggregate."""
    ranked = info.goal in ("max", "min")
    goal: Literal["max", "min"] = "min" if info.goal == "min" else "max"
    rows: list[MetricRow] = []
    for i, (label, runs) in enumerate(exp.groups().items()):
        final = _score(exp, label, info.key, "final", goal, n_resamples, seed + i)
        if final.n == 0:
            continue
        source = _best_source(runs, info.key, ranked)
        how: How = "selected" if source == "selection split" else "best"
        rows.append(MetricRow(
            label=label,
            final=final,
            best=_score(exp, label, info.key, how, goal, n_resamples, seed + 1000 + i),
            auc=_score(exp, label, info.key, "auc", goal, n_resamples, seed + 2000 + i),
            best_source=source,
        ))
    if ranked:
        rows = _ranked(rows, higher_is_better=info.goal == "max")
    return MetricTable(info, rows)


def _ranked(rows: list[MetricRow], higher_is_better: bool) -> list[MetricRow]:
    """Sort by the final aggregate's centre; competition ranks (1, 2, 2, 4) on ties."""
    sign = -1.0 if higher_is_better else 1.0
    ordered = sorted(rows, key=lambda r: sign * r.final.aggregate.point)
    out: list[MetricRow] = []
    for i, row in enumerate(ordered):
        tied = bool(out) and out[-1].final.aggregate.point == row.final.aggregate.point
        rank = out[-1].rank if tied else i + 1
        out.append(MetricRow(row.label, row.final, row.best, row.auc, row.best_source, rank))
    return out


# --------------------------------------------------------------------------- costs


def run_wall_s(run: RunLog) -> float:
    """Wall time of a run: its status file, else the last logged ``train/wall_s``."""
    return run.wall_s if run.wall_s is not None else run.final(WALL)


def _budget_value(run: RunLog, key: str) -> float:
    if key == WALL:
        return run_wall_s(run)
    if key == PERF_PEAK_MEMORY:
        return run.best(key, "max")
    return run.final(key)


def cost_rows(exp: Experiment) -> tuple[list[CostRow], list[str]]:
    """Per label the budgets spent, and the budget keys some finished run logged."""
    present = [k for k in COST_KEYS if k == WALL or exp.has(k)]
    rows = []
    for label, runs in exp.groups().items():
        budget = {k: Spread.of([_budget_value(r, k) for r in runs]) for k in present}
        rates = []
        for r in runs:
            logged = r.values(PERF_SAMPLES_PER_S)
            wall, samples = run_wall_s(r), r.final(SAMPLES)
            rates.append(float(logged.mean()) if logged.size
                         else samples / wall if wall > 0 else math.nan)
        rows.append(CostRow(label, len(runs), budget, _nanmean(rates)))
    present = [k for k in present if any(math.isfinite(r.budget[k].mean) for r in rows)]
    return rows, present


def _nanmean(values: list[float] | np.ndarray) -> float:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


# --------------------------------------------------------------------------- noise


def noise_rows(exp: Experiment, metrics: list[MetricInfo]) -> list[NoiseRow]:
    """For each ranked metric whose runs logged an evaluation-seed spread: training-seed
    std against within-run evaluation std (see :class:`NoiseRow`)."""
    out = []
    for info in metrics:
        for label, runs in exp.groups().items():
            finals = np.asarray([r.final(info.key) for r in runs], dtype=float)
            stds = np.asarray([r.eval_std(info.key) for r in runs], dtype=float)
            ok = np.isfinite(stds) & np.isfinite(finals)
            if not ok.any():
                continue
            between = Spread.of(finals[ok]).std
            within = float(np.sqrt(np.mean(stds[ok] ** 2)))
            ks = {r.eval_seeds for r, good in zip(runs, ok) if good}
            k = ks.pop() if len(ks) == 1 else None
            se = within / math.sqrt(k) if k else math.nan
            training = (math.sqrt(max(0.0, between**2 - se**2))
                        if math.isfinite(between) and math.isfinite(se) else math.nan)
            out.append(NoiseRow(label, info.key, int(ok.sum()), between, within, k, se,
                                training))
    return out


# --------------------------------------------------------------------------- summary


def _seed_warnings(tables: dict[str, MetricTable]) -> list[str]:
    """The few-seeds warning for the two smallest groups of the headline metric."""
    table = next((t for t in tables.values() if t.rows), None)
    if table is None:
        return []
    sizes = sorted(r.n for r in table.rows)
    n, m = (sizes[0], sizes[1]) if len(sizes) > 1 else (sizes[0], sizes[0])
    warning = few_seeds_warning(n, m, ALPHA)
    return [warning] if warning else []


def summarize(exp: Experiment, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
              catalog: Mapping[str, MetricInfo] | None = None) -> Summary:
    """Compute every table of the report from the finished runs of ``exp``.

    ``catalog`` is the metric catalogue (default: the canonical metrics; pass
    ``catalogue(pm.registry.metrics.values())`` for plugin metrics). Per evaluation metric:
    final, best and AUC per run, summarised per label (:class:`ScoreSummary`); pairwise
    P(improvement), BH-adjusted Welch tests and seeds-for-power for the ranked ones; costs;
    training against evaluation noise; the few-seeds warning.
    """
    logged = {k for run in exp.runs for row in run.rows for k in row}
    cat = {**catalogue(logged=logged), **(dict(catalog) if catalog is not None else {})}
    metrics = [m for m in ranked_eval_metrics(cat) if exp.has(m.key)]
    tables = {m.key: metric_table(exp, m, n_resamples, seed) for m in metrics}
    pairwise = {}
    for key, table in tables.items():
        if table.ranked and len(table.rows) > 1:
            # leader first, so that P(A > B) mostly reads as "how sure is the lead"
            scores = {r.label: exp.score_matrix(r.label, key, "final") for r in table.rows}
            pairwise[key] = pairwise_comparisons(scores, table.info.goal,
                                                 n_resamples=n_resamples, seed=seed)
    costs, cost_keys = cost_rows(exp)
    return Summary(
        experiment=exp,
        catalog=cat,
        tables=tables,
        pairwise=pairwise,
        costs=costs,
        cost_keys=cost_keys,
        noise=noise_rows(exp, [m for m in metrics if m.goal in ("max", "min")]),
        warnings=_seed_warnings(tables),
        n_resamples=n_resamples,
        seed=seed,
    )


__all__ = ["COST_KEYS", "RECOMMENDED_SEEDS", "CostRow", "MetricRow", "MetricTable", "NoiseRow",
           "ScoreSummary", "Spread", "Summary", "cost_rows", "metric_table", "noise_rows",
           "run_wall_s", "summarize"]
