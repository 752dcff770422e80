"""Statistics for comparing algorithms from a handful of seeds.

RLHF comparisons rarely afford more than 3-5 seeds, so point estimates mislead (Henderson et
al. 2018). Following rliable (Agarwal et al. 2021) every aggregate comes with a bootstrap
interval, and every test comes with a warning when the seeds are too few for it to mean
anything.

Conventions. Scores are per-run numbers, shaped ``[n_runs]`` (one task) or ``[n_runs, n_tasks]``
(rliable's layout). NaN marks a missing run (a failed seed, a task a seed never ran) and is
dropped, task by task. All randomness comes from a seeded :class:`numpy.random.Generator`, so
the same logs always give the same report.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

#: Fraction trimmed from each end by the interquartile mean.
IQM_TRIM = 0.25
DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
#: Below this many seeds per algorithm, intervals undercover and tests lack power
#: (Colas et al. 2018): the report then shows ranges, never confidence intervals.
RECOMMENDED_SEEDS = 5
#: Power and level of the seeds-needed estimate (:func:`seeds_for_power`).
POWER = 0.8
ALPHA = 0.05

Seed = int | np.random.Generator | None
Statistic = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval ``[low, high]``."""

    point: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside the closed interval."""
        return self.low <= value <= self.high


@dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variance t-test of mean(x) - mean(y).

    t = (m_x - m_y) / sqrt(s_x²/n_x + s_y²/n_y), with Welch-Satterthwaite degrees of freedom
    df = (s_x²/n_x + s_y²/n_y)² / ((s_x²/n_x)²/(n_x-1) + (s_y²/n_y)²/(n_y-1)).
    ``low``/``high`` bound the difference of means (95%). NaN where undefined (n < 2 or no
    variance in either group).
    """

    t: float
    df: float
    p: float
    diff: float
    low: float
    high: float


@dataclass(frozen=True)
class PairComparison:
    """One ordered pair of algorithms (a vs b) on one metric."""

    a: str
    b: str
    n_a: int
    n_b: int
    #: P(a > b) for a run drawn from each, with its bootstrap interval.
    poi: Interval
    welch: WelchResult
    #: Welch p-value after Benjamini-Hochberg adjustment across all pairs of the metric.
    p_adjusted: float
    #: The smallest two-sided p an exact rank test could give at these sample sizes.
    min_exact_p: float
    #: Seeds per arm to detect the observed difference at 80% power (:func:`seeds_for_power`).
    seeds_for_power: float = math.nan


#: What an aggregate's or a band's interval is: a bootstrap confidence interval (enough seeds),
#: the observed range over the runs (fewer than :data:`RECOMMENDED_SEEDS`), or nothing (one run).
IntervalKind = Literal["ci", "range", "none"]
#: The centre of an aggregate: the IQM where it trims something (n ≥ 4), else the plain mean.
Centre = Literal["IQM", "mean"]


@dataclass(frozen=True)
class Band:
    """A curve's mean over seeds at each grid point, with a band: the percentile bootstrap
    interval of the mean (``interval == "ci"``) or the min–max over runs (``"range"``)."""

    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_runs: int
    interval: IntervalKind = "ci"
    confidence: float = DEFAULT_CONFIDENCE

    def describe(self) -> str:
        """What the shaded band is, for a legend or a caption."""
        return interval_text(self.interval, self.n_runs, self.confidence)


@dataclass(frozen=True)
class Aggregate:
    """One algorithm's per-run scores summarised honestly for its number of seeds.

    * ``n_seeds ≥`` :data:`RECOMMENDED_SEEDS`: IQM with a stratified-bootstrap interval
      (``interval == "ci"``);
    * ``2 ≤ n_seeds <`` :data:`RECOMMENDED_SEEDS`: the observed range (min, max) over the runs
      (``"range"``): a bootstrap interval from 3 seeds undercovers badly (Colas et al. 2018),
      so none is claimed;
    * one run: the value alone (``"none"``).

    The centre is the IQM only where trimming removes something (n ≥ 4 pooled runs:
    ``trim_mean`` cuts ⌊0.25·n⌋ per end); below that it *is* the mean and is called so.
    """

    centre: Centre
    point: float
    low: float
    high: float
    interval: IntervalKind
    #: finite runs pooled over tasks
    n: int
    #: the fewest seeds any task has (what decides between an interval and a range)
    n_seeds: int
    confidence: float = DEFAULT_CONFIDENCE

    def header(self) -> str:
        """Column-header text, e.g. ``IQM [95% CI]`` or ``mean [range over 3 seeds]``."""
        if self.interval == "none":
            return f"{self.centre} (one run: no spread)"
        return f"{self.centre} [{self.interval_text()}]"

    def interval_text(self) -> str:
        """``95% CI`` or ``range over n seeds`` (``runs`` when several tasks are pooled)."""
        unit = "seeds" if self.n == self.n_seeds else "runs"
        return interval_text(self.interval, self.n, self.confidence, unit)

    def overlaps(self, other: Aggregate) -> bool:
        """Whether the two intervals (or ranges) share a point."""
        return self.low <= other.high and other.low <= self.high


def interval_text(kind: IntervalKind, n: int, confidence: float = DEFAULT_CONFIDENCE,
                  unit: str = "seeds") -> str:
    """The words for an interval kind: never a confidence level unless there is one."""
    if kind == "ci":
        return f"{confidence:.0%} CI"
    if kind == "range":
        return f"range over {n} {unit}"
    return "one run: no spread"


# --------------------------------------------------------------------------- basics


def as_runs_by_tasks(scores: np.ndarray | Sequence[float]) -> np.ndarray:
    """View scores as ``[n_runs, n_tasks]``: a 1-D array is one task."""
    arr = np.asarray(scores, dtype=float)
    if arr.ndim == 1:
        return arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"scores must be [n_runs] or [n_runs, n_tasks], got shape {arr.shape}")
    return arr


def task_columns(scores: np.ndarray | Sequence[float]) -> list[np.ndarray]:
    """The finite scores of each task (the strata of the stratified bootstrap)."""
    arr = as_runs_by_tasks(scores)
    return [col[np.isfinite(col)] for col in arr.T]


def flat(scores: np.ndarray | Sequence[float]) -> np.ndarray:
    """All finite scores pooled over runs x tasks."""
    arr = np.asarray(scores, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def mean_std(scores: np.ndarray | Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of the pooled scores.

    ddof=1 because the seeds are a sample of the algorithm's outcomes; with one run the
    spread is unknown and the std is NaN rather than a misleading 0.
    """
    x = flat(scores)
    if x.size == 0:
        return math.nan, math.nan
    std = float(np.std(x, ddof=1)) if x.size > 1 else math.nan
    return float(np.mean(x)), std


def iqm(scores: np.ndarray | Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% of all runs x tasks pooled.

    IQM = trim_mean(scores.flatten(), 0.25) (rliable's ``aggregate_iqm``): robust to one
    outlier seed like the median, yet uses half the data like the mean. Note that
    ``trim_mean`` cuts ``floor(0.25·N)`` values per end, so with N ≤ 3 it equals the mean.
    """
    x = flat(scores)
    return float(sps.trim_mean(x, IQM_TRIM)) if x.size else math.nan


def iqm_rows(samples: np.ndarray) -> np.ndarray:
    """IQM of each row of a ``[reps, N]`` array (the vectorised bootstrap statistic)."""
    return np.asarray(sps.trim_mean(samples, IQM_TRIM, axis=1), dtype=float)


def mean_rows(samples: np.ndarray) -> np.ndarray:
    """Mean of each row of a ``[reps, N]`` array."""
    return samples.mean(axis=1)


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- bootstrap


def stratified_bootstrap(
    scores: np.ndarray | Sequence[float],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: Seed = 0,
) -> np.ndarray:
    """Resample runs with replacement independently within each task.

    Returns ``[n_resamples, N]``: each row is one bootstrap replicate of all N finite scores
    pooled (task t contributes n_t draws from its own n_t runs). Keeping tasks as strata is
    rliable's ``StratifiedBootstrap``: every replicate keeps each task's weight, so an
    easy task cannot crowd out a hard one by chance.
    """
    rng = _rng(seed)
    parts = []
    for col in task_columns(scores):
        if col.size == 0:
            continue
        idx = rng.integers(0, col.size, size=(n_resamples, col.size))
        parts.append(col[idx])
    if not parts:
        return np.empty((n_resamples, 0))
    return np.concatenate(parts, axis=1)


def bootstrap_ci(
    scores: np.ndarray | Sequence[float],
    statistic: Statistic = iqm_rows,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: Seed = 0,
) -> Interval:
    """Point estimate and percentile interval of a pooled statistic (IQM by default).

    The point is ``statistic`` on the observed scores; the interval is the
    [(1-c)/2, (1+c)/2] percentiles of the statistic over stratified bootstrap replicates.
    With one run there is nothing to resample and the interval collapses to the point.
    """
    observed = flat_by_task(scores)
    if observed.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    point = float(statistic(observed[None, :])[0])
    reps = statistic(stratified_bootstrap(scores, n_resamples, seed))
    low, high = _percentiles(reps, confidence)
    return Interval(point, low, high)


def flat_by_task(scores: np.ndarray | Sequence[float]) -> np.ndarray:
    """Finite scores concatenated task by task (the order stratified replicates use)."""
    cols = task_columns(scores)
    return np.concatenate(cols) if cols else np.empty(0)


def iqm_ci(
    scores: np.ndarray | Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: Seed = 0,
) -> Interval:
    """IQM with its 95% stratified-bootstrap interval (rliable's headline aggregate)."""
    return bootstrap_ci(scores, iqm_rows, confidence, n_resamples, seed)


def aggregate(
    scores: np.ndarray | Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: Seed = 0,
    min_seeds_for_ci: int = RECOMMENDED_SEEDS,
) -> Aggregate:
    """The table entry for one algorithm's per-run scores (see :class:`Aggregate`).

    With at least ``min_seeds_for_ci`` seeds in every task: IQM and its stratified-bootstrap
    interval (:func:`iqm_ci`). With fewer: the IQM if it trims (n ≥ 4), else the mean, and
    the observed min–max over the runs, labelled as a range.
    """
    cols = task_columns(scores)
    x = flat(scores)
    n = int(x.size)
    n_seeds = min((c.size for c in cols if c.size), default=0)
    if n == 0:
        return Aggregate("mean", math.nan, math.nan, math.nan, "none", 0, 0, confidence)
    trims = math.floor(IQM_TRIM * n) >= 1
    centre: Centre = "IQM" if trims else "mean"
    point = iqm(x) if trims else float(x.mean())
    if n_seeds >= min_seeds_for_ci:
        ci = iqm_ci(scores, confidence, n_resamples, seed)
        return Aggregate("IQM", ci.point, ci.low, ci.high, "ci", n, n_seeds, confidence)
    if n == 1:
        return Aggregate(centre, point, point, point, "none", n, n_seeds, confidence)
    return Aggregate(centre, point, float(x.min()), float(x.max()), "range", n, n_seeds,
                     confidence)


def normalized_auc(x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float]) -> float:
    """Area under a learning curve divided by its x-span: the curve's average height.

    AUC = 1/(x_n − x_1) · Σ_i (x_{i+1} − x_i) · (y_i + y_{i+1}) / 2 (trapezoid rule over the
    evaluation points, x = training samples). Two algorithms that end at the same value
    differ here when one got there sooner. NaN with fewer than two points or no x-span.
    """
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    if xs.size < 2:
        return math.nan
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    span = float(xs[-1] - xs[0])
    if span <= 0:
        return math.nan
    area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))
    return area / span


def seeds_for_power(
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    alpha: float = ALPHA,
    power: float = POWER,
) -> float:
    """Seeds per arm needed to detect the observed difference of means at ``power``
    with a two-sided test at level ``alpha`` (normal approximation to Welch's test).

    With δ = mean(x) − mean(y) and the observed sample variances s_x², s_y² (ddof=1), equal
    seeds n per arm give the difference a standard error sqrt((s_x² + s_y²)/n), so

        n = ⌈ (z_{1−α/2} + z_{power})² · (s_x² + s_y²) / δ² ⌉,

    (z_{0.975} + z_{0.8})² ≈ 7.85. The observed δ and variances are themselves noisy, so
    read it as an order of magnitude ("3 seeds or 30?"), and it is optimistic at small n
    where Welch's t has heavier tails than the normal. At least 2 (a variance needs two);
    ``inf`` when no difference was observed; NaN when either arm has fewer than 2 runs.
    """
    a, b = flat(x), flat(y)
    if a.size < 2 or b.size < 2:
        return math.nan
    delta = float(a.mean() - b.mean())
    var = float(np.var(a, ddof=1) + np.var(b, ddof=1))
    if delta == 0.0:
        return math.inf
    z = float(sps.norm.ppf(1.0 - alpha / 2.0) + sps.norm.ppf(power))
    return float(max(2, math.ceil(z * z * var / (delta * delta))))


# --------------------------------------------------------------------------- P(X > Y)


def _poi_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) along the last axes: mean over all (i, j) of [x_i > y_j] + ½[x_i = y_j]."""
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return gt + 0.5 * eq


def _paired_tasks(x: np.ndarray, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    xs, ys = task_columns(x), task_columns(y)
    if len(xs) != len(ys):
        raise ValueError(f"x has {len(xs)} tasks but y has {len(ys)}")
    return [(a, b) for a, b in zip(xs, ys, strict=True) if a.size and b.size]


def probability_of_improvement(
    x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float]
) -> float:
    """P(X > Y): the chance a run of X scores higher than a run of Y, averaged over tasks.

    Per task, P = (1/(n·m)) Σ_i Σ_j ([x_i > y_j] + ½[x_i = y_j]) = U / (n·m), the Mann-Whitney
    U statistic of x normalised; 0.5 means no tendency either way. Unlike a difference of
    means it does not care how far apart the runs are, only how often one wins.
    """
    pairs = _paired_tasks(np.asarray(x, float), np.asarray(y, float))
    if not pairs:
        return math.nan
    return float(np.mean([_poi_matrix(a, b) for a, b in pairs]))


def probability_of_improvement_ci(
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: Seed = 0,
) -> Interval:
    """P(X > Y) with a percentile bootstrap interval.

    X's and Y's runs are resampled independently, within each task (rliable's
    ``StratifiedIndependentBootstrap``), and P is recomputed on each replicate.
    """
    pairs = _paired_tasks(np.asarray(x, float), np.asarray(y, float))
    if not pairs:
        return Interval(math.nan, math.nan, math.nan)
    rng = _rng(seed)
    reps = np.zeros(n_resamples)
    for a, b in pairs:
        ra = a[rng.integers(0, a.size, size=(n_resamples, a.size))]
        rb = b[rng.integers(0, b.size, size=(n_resamples, b.size))]
        reps += _poi_matrix(ra, rb)
    reps /= len(pairs)
    low, high = _percentiles(reps, confidence)
    return Interval(probability_of_improvement(x, y), low, high)


# --------------------------------------------------------------------------- tests


def welch_test(
    x: np.ndarray | Sequence[float],
    y: np.ndarray | Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
) -> WelchResult:
    """Welch's t-test (scipy ``ttest_ind(equal_var=False)``) on the pooled scores.

    Welch rather than Student because two algorithms rarely share a variance across seeds.
    It assumes roughly normal seed scores, which nobody can check with 3 seeds: read it
    alongside :func:`few_seeds_warning`.
    """
    a, b = flat(x), flat(y)
    diff = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    if a.size < 2 or b.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return WelchResult(math.nan, math.nan, math.nan, diff, math.nan, math.nan)
    res = sps.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(confidence)
    return WelchResult(
        t=float(res.statistic),
        df=float(res.df),
        p=float(res.pvalue),
        diff=diff,
        low=float(ci.low),
        high=float(ci.high),
    )


def benjamini_hochberg(pvalues: np.ndarray | Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (control the false discovery rate).

    Comparing k algorithms makes k(k-1)/2 tests; at 0.05 each, some "wins" are luck. With the
    m finite p-values sorted ascending, p_adj(i) = min_{j ≥ i} min(1, m·p_(j) / j), mapped
    back to input order; a difference is a discovery at FDR q when p_adj ≤ q. NaN stays NaN.
    Uses ``scipy.stats.false_discovery_control`` when present.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if not ok.any():
        return out
    fdc = getattr(sps, "false_discovery_control", None)
    out[ok] = fdc(p[ok], method="bh") if fdc is not None else _bh(p[ok])
    return out


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg step-up adjustment (fallback for scipy < 1.11)."""
    m = p.size
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.clip(adjusted, 0.0, 1.0)
    return out


def pairwise_comparisons(
    scores: dict[str, np.ndarray],
    goal: str = "max",
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: Seed = 0,
) -> list[PairComparison]:
    """Every unordered pair (a before b in ``scores`` order): P(a better than b) with its
    interval, Welch's test, BH-adjusted p-values across the pairs, and the seeds per arm a
    test would need to detect the observed difference (:func:`seeds_for_power`).

    For ``goal='min'`` scores are negated first, so that "better" and P(a > b) keep
    meaning "a improves on b".
    """
    sign = -1.0 if goal == "min" else 1.0
    labels = list(scores)
    rng = _rng(seed)
    raw: list[_Pair] = []
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            xa, xb = sign * as_runs_by_tasks(scores[a]), sign * as_runs_by_tasks(scores[b])
            poi = probability_of_improvement_ci(xa, xb, n_resamples=n_resamples, seed=rng)
            welch = welch_test(xa, xb)
            raw.append(_Pair(a, b, poi, welch, flat(xa).size, flat(xb).size,
                             seeds_for_power(xa, xb)))
    adjusted = benjamini_hochberg([r.welch.p for r in raw])
    return [
        PairComparison(r.a, r.b, r.n_a, r.n_b, r.poi, r.welch, float(adj),
                       min_exact_mannwhitney_p(r.n_a, r.n_b), r.power_n)
        for r, adj in zip(raw, adjusted, strict=True)
    ]


@dataclass(frozen=True)
class _Pair:
    a: str
    b: str
    poi: Interval
    welch: WelchResult
    n_a: int
    n_b: int
    power_n: float


# --------------------------------------------------------------------------- few seeds


def min_exact_mannwhitney_p(n: int, m: int) -> float:
    """The smallest two-sided p-value an exact Mann-Whitney (or permutation) test can give.

    The most extreme outcome, every run of one group above every run of the other, is one
    of C(n+m, n) equally likely rank arrangements under the null, in each direction; hence
    p_min = 2 / C(n+m, n) (capped at 1). 3 vs 3 → 2/20 = 0.10; 5 vs 5 → 2/252 ≈ 0.0079.
    """
    if n < 1 or m < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n + m, n))


def seeds_needed(alpha: float = 0.05) -> int:
    """Smallest n for which n vs n seeds can reach a two-sided exact p ≤ ``alpha``."""
    n = 1
    while min_exact_mannwhitney_p(n, n) > alpha:
        n += 1
    return n


def few_seeds_warning(n: int, m: int, alpha: float = 0.05) -> str | None:
    """A plain-language warning when n vs m seeds are too few for a test to mean much.

    Three levels: fewer than 2 seeds (no spread, no test at all); an exact rank test that
    cannot reach ``alpha`` however separated the runs are (p_min = 2/C(n+m, n) > alpha);
    fewer than :data:`RECOMMENDED_SEEDS` (tests possible but weak, bootstrap intervals too
    narrow). ``None`` when neither applies.
    """
    if min(n, m) < 2:
        return (
            f"Only {n} vs {m} seeds: with a single run the spread between seeds is unknown, so "
            f"no test or interval is meaningful. Run at least {RECOMMENDED_SEEDS} seeds per "
            f"algorithm."
        )
    p_min = min_exact_mannwhitney_p(n, m)
    if p_min > alpha:
        return (
            f"With {n} vs {m} seeds the smallest two-sided p-value an exact Mann-Whitney "
            f"(rank) test can give is 2/C({n + m},{n}) = {p_min:.3g} > {alpha:g}, even when every "
            f"run of one algorithm beats every run of the other: no rank test can call a "
            f"difference significant. A small Welch p-value here leans entirely on assuming "
            f"the seed scores are normal, and a bootstrap interval would be too narrow at this size "
            f"(the report shows ranges over seeds instead). "
            f"Treat differences as anecdotal; use at least {seeds_needed(alpha)} seeds per "
            f"algorithm for a rank test to be able to reach {alpha:g}, {RECOMMENDED_SEEDS} or "
            f"more to have power."
        )
    if min(n, m) < RECOMMENDED_SEEDS:
        return (
            f"Only {n} vs {m} seeds: a rank test can reach p = {p_min:.3g} at best, so only "
            f"complete separation is significant; tests have little power and bootstrap "
            f"intervals would be too narrow (the report shows ranges instead). A non-significant difference is not evidence of "
            f"no difference. Use {RECOMMENDED_SEEDS} or more seeds per algorithm."
        )
    return None


# --------------------------------------------------------------------------- curves


def common_grid(
    xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], n_points: int = 100
) -> tuple[np.ndarray, np.ndarray] | None:
    """Put several runs' curves on one x grid, as a ``(grid, [n_runs, n_points])`` pair.

    Runs that logged at identical x (the usual case: same evaluation schedule in samples)
    keep their points unchanged. Otherwise each curve is linearly interpolated onto
    ``n_points`` evenly spaced x in the range every run covers, [max_i min x_i, min_i max x_i],
    so that no value is extrapolated. ``None`` when no x range is shared.
    """
    pairs = [(np.asarray(x, float), np.asarray(y, float)) for x, y in zip(xs, ys, strict=True)]
    pairs = [(x, y) for x, y in pairs if x.size]
    if not pairs:
        return None
    first = pairs[0][0]
    if all(x.shape == first.shape and np.array_equal(x, first) for x, _ in pairs):
        return first, np.stack([y for _, y in pairs])
    lo = max(float(x.min()) for x, _ in pairs)
    hi = min(float(x.max()) for x, _ in pairs)
    if not lo < hi:
        return None
    grid = np.linspace(lo, hi, n_points)
    return grid, np.stack([np.interp(grid, x, y) for x, y in pairs])


def range_band(x: np.ndarray, ys: np.ndarray) -> Band:
    """Mean curve over seeds with the min–max over runs at each x (few seeds: no interval)."""
    ys = np.asarray(ys, dtype=float)
    kind: IntervalKind = "range" if ys.shape[0] > 1 else "none"
    return Band(np.asarray(x, float), ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0),
                ys.shape[0], kind)


def curve_band(
    x: np.ndarray,
    ys: np.ndarray,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = 1000,
    seed: Seed = 0,
    min_seeds_for_ci: int = RECOMMENDED_SEEDS,
) -> Band:
    """The band a learning curve shows: :func:`bootstrap_band` with enough seeds, else
    :func:`range_band` (the same rule as :func:`aggregate`)."""
    ys = np.asarray(ys, dtype=float)
    if ys.shape[0] >= min_seeds_for_ci:
        return bootstrap_band(x, ys, confidence, n_resamples, seed)
    return range_band(x, ys)


def bootstrap_band(
    x: np.ndarray,
    ys: np.ndarray,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = 1000,
    seed: Seed = 0,
) -> Band:
    """Mean curve over seeds and a percentile bootstrap band of that mean at each x.

    ``ys`` is ``[n_runs, n_x]``. Runs (whole curves) are resampled with replacement, so the
    band reflects seed-to-seed variation; it is ``scipy.stats.bootstrap`` on axis 0. With one
    run, or runs identical at some x, the band collapses onto the mean there.
    """
    ys = np.asarray(ys, dtype=float)
    mean = ys.mean(axis=0)
    if ys.shape[0] < 2:
        return Band(np.asarray(x, float), mean, mean.copy(), mean.copy(), ys.shape[0], "none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (constant) columns warn; band = mean there
        res = sps.bootstrap(
            (ys,),
            np.mean,
            axis=0,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="percentile",
            rng=_rng(seed),
        )
    low = np.where(np.isfinite(res.confidence_interval.low), res.confidence_interval.low, mean)
    high = np.where(np.isfinite(res.confidence_interval.high), res.confidence_interval.high, mean)
    return Band(
        np.asarray(x, float), mean, np.minimum(low, mean), np.maximum(high, mean), ys.shape[0],
        "ci", confidence,
    )
