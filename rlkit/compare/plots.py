"""The report's figures, one function per figure, each written as a PNG.

Every function takes the loaded :class:`~rlkit.compare.logs.Experiment` (finished runs only)
and a path, and returns the path written, or ``None`` when no run logged the metrics the
figure needs, so that a report never shows an empty chart. Colours are fixed per label
(:func:`label_colors`) so an algorithm looks the same in every figure.

Figures are built with matplotlib's object API (``Figure`` rendered by the Agg canvas on
save) rather than ``pyplot``: no global backend to select, no display needed, and nothing
left open between figures.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rlkit.compare.logs import Experiment
from rlkit.compare.stats import (
    DEFAULT_CONFIDENCE,
    RECOMMENDED_SEEDS,
    IntervalKind,
    common_grid,
    curve_band,
)
from rlkit.metrics import (
    EVAL_GOLD_REWARD,
    EVAL_KL,
    EVAL_REWARD,
    FLOPS,
    OPTIMIZER_STEPS,
    SAMPLES,
    TOKENS,
    WALL,
    MetricInfo,
    catalogue,
    info,
    ranked_eval_metrics,
)

DPI = 110
FIGSIZE = (7.0, 4.5)

#: x-axes learning curves are drawn against (budgets in every unit the engine logs), with
#: the short name used in figure names: ``curve_<metric>_vs_<short>``.
CURVE_AXES: dict[str, str] = {SAMPLES: "samples", OPTIMIZER_STEPS: "optimizer_steps",
                              TOKENS: "tokens", FLOPS: "flops", WALL: "wall"}


#: every metric is drawn against these; ranked metrics against every axis of CURVE_AXES
PRIMARY_AXES = (SAMPLES, WALL)


def curve_name(metric: str, x_key: str) -> str:
    """The figure name of ``metric`` against ``x_key``."""
    return f"curve_{metric.replace('/', '_')}_vs_{CURVE_AXES[x_key]}"


def band_kind(n_runs: int) -> IntervalKind:
    """The band a label with ``n_runs`` seeds gets (the tables' rule: CI only at 5+)."""
    return "ci" if n_runs >= RECOMMENDED_SEEDS else "range" if n_runs > 1 else "none"


def band_caption(kinds: set[IntervalKind], confidence: float = DEFAULT_CONFIDENCE,
                 short: bool = False) -> str:
    """What the shaded bands of a figure are, in words true for every band in it."""
    ci = f"{confidence:.0%} bootstrap CI of the mean"
    if kinds <= {"ci"}:
        return f"shaded: {ci}"
    if "ci" not in kinds:
        if short:
            return f"shaded: min–max over seeds (< {RECOMMENDED_SEEDS} seeds: no interval)"
        return ("shaded: range over seeds (min to max; fewer than "
                f"{RECOMMENDED_SEEDS} seeds, so no interval is claimed)")
    if short:
        return f"shaded: {confidence:.0%} CI ({RECOMMENDED_SEEDS}+ seeds) or min–max over seeds"
    return (f"shaded: {ci} for algorithms with {RECOMMENDED_SEEDS}+ seeds, the range over "
            f"seeds for the others")


def curve_band_kinds(exp: Experiment, metric: str, x_key: str = SAMPLES) -> set[IntervalKind]:
    """The band kinds :func:`plot_learning_curve` draws for ``metric`` (for captions)."""
    groups = exp.groups()
    return {band_kind(sum(r.has(metric) and r.has(x_key) for r in runs))
            for runs in groups.values() if any(r.has(metric) for r in runs)}


def label_colors(labels: list[str]) -> dict[str, str]:
    """A stable colour per label (matplotlib's tab10 cycle, then tab20)."""
    tab10, tab20 = matplotlib.colormaps["tab10"], matplotlib.colormaps["tab20"]
    palette = [matplotlib.colors.to_hex(tab10(i)) for i in range(10)]
    palette += [matplotlib.colors.to_hex(tab20(i)) for i in range(1, 20, 2)]
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def _new_figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=FIGSIZE)
    return fig, fig.subplots()


def _axis_label(info: MetricInfo) -> str:
    return f"{info.title} [{info.unit}]"


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", frameon=False, loc="best")


def plot_learning_curve(
    exp: Experiment, metric: str, x_key: str, path: Path, seed: int = 0,
    metric_info: MetricInfo | None = None,
) -> Path | None:
    """``metric`` against ``x_key`` (a budget: samples, optimizer steps, tokens, FLOPs or
    wall seconds): per label, the mean over seeds with a band: the 95% bootstrap interval of
    the mean with 5+ seeds, the min–max over seeds with fewer (never called an interval).

    Runs that logged at different x are interpolated onto the x range all of them cover
    (:func:`~rlkit.compare.stats.common_grid`); a label whose runs share no x range shows
    its runs individually instead of a band. ``None`` when no run logged both keys.
    """
    minfo = metric_info or info(metric)
    groups = {lbl: [r for r in runs if r.has(metric) and r.has(x_key)]
              for lbl, runs in exp.groups().items()}
    groups = {lbl: runs for lbl, runs in groups.items() if runs}
    if not groups:
        return None
    kinds: set[IntervalKind] = set()
    colors = label_colors(exp.labels)
    fig, ax = _new_figure()
    for label, runs in groups.items():
        series = [r.series(metric, x_key) for r in runs]
        grid = common_grid([s[0] for s in series], [s[1] for s in series])
        color = colors[label]
        if grid is None:
            for i, (x, y) in enumerate(series):
                ax.plot(x, y, color=color, alpha=0.6, label=label if i == 0 else None)
            continue
        band = curve_band(grid[0], grid[1], seed=seed)
        kinds.add(band.interval)
        ax.plot(band.x, band.mean, color=color, lw=2,
                label=f"{label} (n={band.n_runs}; {band.describe()})")
        ax.fill_between(band.x, band.low, band.high, color=color, alpha=0.2, lw=0)
    x_info = info(x_key)
    ax.set_xlabel(_axis_label(x_info))
    ax.set_ylabel(_axis_label(minfo))
    shaded = band_caption(kinds, short=True)
    ax.set_title(f"{minfo.title} vs {x_info.title}\nmean over seeds; {shaded}",
                 fontsize="medium")
    ax.grid(alpha=0.3)
    _legend(ax)
    return _save(fig, path)


def _final_points(exp: Experiment, x_metric: str, y_metric: str) -> dict[str, np.ndarray]:
    """Per label, ``[n_runs, 2]`` of (final x_metric, final y_metric) for runs logging both."""
    out: dict[str, np.ndarray] = {}
    for label, runs in exp.groups().items():
        pts = [(r.final(x_metric), r.final(y_metric)) for r in runs]
        arr = np.asarray([p for p in pts if np.all(np.isfinite(p))], dtype=float)
        if arr.size:
            out[label] = arr.reshape(-1, 2)
    return out


def _scatter_with_means(exp: Experiment, points: dict[str, np.ndarray], ax: Axes) -> None:
    """Dots: one per run; diamond with bars: the label's mean ± one std over seeds."""
    colors = label_colors(exp.labels)
    for label, arr in points.items():
        c = colors[label]
        ax.scatter(arr[:, 0], arr[:, 1], color=c, alpha=0.55, s=30)
        mx, my = arr.mean(axis=0)
        sx, sy = arr.std(axis=0, ddof=1) if len(arr) > 1 else (0.0, 0.0)
        ax.errorbar(
            mx,
            my,
            xerr=sx,
            yerr=sy,
            color=c,
            marker="D",
            ms=9,
            mec="black",
            capsize=3,
            lw=1.2,
            label=label,
        )


def plot_frontier(exp: Experiment, path: Path) -> Path | None:
    """The reward-KL frontier: final eval reward against final eval KL, one point per run.

    Reward is bought with divergence from the reference policy; an algorithm is better on
    this plot when it sits higher at the same KL (up-left). Diamonds: each algorithm's mean,
    bars ± one std over seeds.
    """
    points = _final_points(exp, EVAL_KL, EVAL_REWARD)
    if not points:
        return None
    fig, ax = _new_figure()
    _scatter_with_means(exp, points, ax)
    ax.set_xlabel(_axis_label(info(EVAL_KL)))
    ax.set_ylabel(_axis_label(info(EVAL_REWARD)))
    ax.set_title("Reward-KL frontier (final evaluation; dots: runs, diamonds: mean ± std)\n"
        "up-left is better: more reward per nat")
    ax.grid(alpha=0.3)
    _legend(ax)
    return _save(fig, path)


def plot_proxy_vs_gold(exp: Experiment, path: Path) -> Path | None:
    """Proxy (reward-model) against gold reward: thin lines trace each run over evaluations,
    dots mark the final evaluation, diamonds each algorithm's mean.

    Reward hacking shows as a trajectory that keeps moving right (proxy up) while turning
    down (gold falls); a proxy that is learned well moves up-right.
    """
    points = _final_points(exp, EVAL_REWARD, EVAL_GOLD_REWARD)
    if not points:
        return None
    colors = label_colors(exp.labels)
    fig, ax = _new_figure()
    for label, runs in exp.groups().items():
        for r in runs:
            rows = [
                (row[EVAL_REWARD], row[EVAL_GOLD_REWARD])
                for row in r.rows
                if EVAL_REWARD in row and EVAL_GOLD_REWARD in row
            ]
            if len(rows) > 1:
                arr = np.asarray(rows, dtype=float)
                ax.plot(arr[:, 0], arr[:, 1], color=colors[label], alpha=0.3, lw=0.8)
    _scatter_with_means(exp, points, ax)
    ax.set_xlabel(_axis_label(info(EVAL_REWARD)))
    ax.set_ylabel(_axis_label(info(EVAL_GOLD_REWARD)))
    ax.set_title(
        "Proxy vs gold reward (dots: final per run, diamonds: mean ± std)\n"
        "lines: each run over training; gold falling = reward hacking"
    )
    ax.grid(alpha=0.3)
    _legend(ax)
    return _save(fig, path)


def make_figures(exp: Experiment, out_dir: Path, seed: int = 0,
                 catalog: dict[str, MetricInfo] | None = None) -> dict[str, Path]:
    """Every figure the logs support, written under ``out_dir``; name → PNG path.

    Names are ``curve_<metric>_vs_<axis>`` (axis: :data:`CURVE_AXES` for ranked metrics,
    :data:`PRIMARY_AXES` for the others; axes no run logged are skipped), ``frontier`` and
    ``proxy_vs_gold``, in the order the report shows them.
    """
    out: dict[str, Path] = {}
    for x_key in CURVE_AXES:
        for m in ranked_eval_metrics(catalog or catalogue()):
            if m.goal == "none" and x_key not in PRIMARY_AXES:
                continue  # descriptive metrics (KL, length): against samples and wall only
            name = curve_name(m.key, x_key)
            written = plot_learning_curve(exp, m.key, x_key, out_dir / f"{name}.png", seed, m)
            if written is not None:
                out[name] = written
    for name, func in (("frontier", plot_frontier), ("proxy_vs_gold", plot_proxy_vs_gold)):
        written = func(exp, out_dir / f"{name}.png")
        if written is not None:
            out[name] = written
    return out
