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

from rlkit.compare.logs import (
    EVAL_METRICS,
    X_AXES,
    X_SAMPLES,
    X_WALL,
    Experiment,
    MetricInfo,
)
from rlkit.compare.stats import bootstrap_band, common_grid

DPI = 110
FIGSIZE = (7.0, 4.5)


def label_colors(labels: list[str]) -> dict[str, str]:
    """A stable colour per label (matplotlib's tab10 cycle, then tab20)."""
    palette = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab10"].colors]
    palette += [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab20"].colors[1::2]]
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
    exp: Experiment, metric: str, x_key: str, path: Path, seed: int = 0
) -> Path | None:
    """``metric`` against ``x_key`` (samples or wall seconds): per label, the mean over seeds
    and its 95% bootstrap band.

    Runs that logged at different x are interpolated onto the x range all of them cover
    (:func:`~rlkit.compare.stats.common_grid`); a label whose runs share no x range shows
    its runs individually instead of a band.
    """
    info = EVAL_METRICS.get(metric, MetricInfo(metric, metric, "value", "none"))
    groups = {lbl: [r for r in runs if r.has(metric)] for lbl, runs in exp.groups().items()}
    groups = {lbl: runs for lbl, runs in groups.items() if runs}
    if not groups:
        return None
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
        band = bootstrap_band(grid[0], grid[1], seed=seed)
        ax.plot(band.x, band.mean, color=color, lw=2, label=f"{label} (n={band.n_runs})")
        ax.fill_between(band.x, band.low, band.high, color=color, alpha=0.2, lw=0)
    ax.set_xlabel(X_AXES.get(x_key, x_key))
    ax.set_ylabel(_axis_label(info))
    against = "samples" if x_key == X_SAMPLES else "wall time"
    ax.set_title(f"{info.title} vs {against}\nmean over seeds, shaded: 95% bootstrap CI")
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
    points = _final_points(exp, "eval/kl", "eval/reward")
    if not points:
        return None
    fig, ax = _new_figure()
    _scatter_with_means(exp, points, ax)
    ax.set_xlabel(_axis_label(EVAL_METRICS["eval/kl"]))
    ax.set_ylabel(_axis_label(EVAL_METRICS["eval/reward"]))
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
    points = _final_points(exp, "eval/reward", "eval/gold_reward")
    if not points:
        return None
    colors = label_colors(exp.labels)
    fig, ax = _new_figure()
    for label, runs in exp.groups().items():
        for r in runs:
            rows = [
                (row["eval/reward"], row["eval/gold_reward"])
                for row in r.rows
                if "eval/reward" in row and "eval/gold_reward" in row
            ]
            if len(rows) > 1:
                arr = np.asarray(rows, dtype=float)
                ax.plot(arr[:, 0], arr[:, 1], color=colors[label], alpha=0.3, lw=0.8)
    _scatter_with_means(exp, points, ax)
    ax.set_xlabel(_axis_label(EVAL_METRICS["eval/reward"]))
    ax.set_ylabel(_axis_label(EVAL_METRICS["eval/gold_reward"]))
    ax.set_title(
        "Proxy vs gold reward (dots: final per run, diamonds: mean ± std)\n"
        "lines: each run over training; gold falling = reward hacking"
    )
    ax.grid(alpha=0.3)
    _legend(ax)
    return _save(fig, path)


def make_figures(exp: Experiment, out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Every figure the logs support, written under ``out_dir``; name → PNG path.

    Names are ``curve_<metric>_vs_<samples|wall>``, ``frontier`` and ``proxy_vs_gold``,
    in the order the report shows them.
    """
    out: dict[str, Path] = {}
    for metric in EVAL_METRICS:
        stem = metric.replace("/", "_")
        for x_key, x_name in ((X_SAMPLES, "samples"), (X_WALL, "wall")):
            name = f"curve_{stem}_vs_{x_name}"
            written = plot_learning_curve(exp, metric, x_key, out_dir / f"{name}.png", seed)
            if written is not None:
                out[name] = written
    for name, func in (("frontier", plot_frontier), ("proxy_vs_gold", plot_proxy_vs_gold)):
        written = func(exp, out_dir / f"{name}.png")
        if written is not None:
            out[name] = written
    return out
