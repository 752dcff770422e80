"""The tuning report: how each algorithm was tuned, how sensitive it is, and the confirmed
comparison on fresh seeds (blocks from :mod:`rlkit.compare.report`, same renderers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure as MplFigure

from rlkit.compare.api import write
from rlkit.compare.plots import DPI, label_colors
from rlkit.compare.render import (
    Block,
    Figure,
    Heading,
    List,
    Paragraph,
    Table,
    warning,
    write_pages,
)
from rlkit.compare.report import fmt, metric_section, pairwise_section
from rlkit.compare.tune import Param, TuneResult
from rlkit.plugins import PluginManager

FIGURES_DIR = "figures"
CONFIRM_REPORT = "confirm/report.md"


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _params_by_key(result: TuneResult) -> dict[str, dict[str, Param]]:
    """Hyperparameter key → {algorithm label: its Param}, in first-seen order."""
    out: dict[str, dict[str, Param]] = {}
    for space in result.spaces:
        for p in space.params:
            out.setdefault(p.key, {})[space.label] = p
    return out


def plot_sensitivity(result: TuneResult, key: str, path: Path) -> Path | None:
    """The objective against one hyperparameter, per algorithm that tuned it: each complete
    trial (mean over tuning seeds, a line through the mean per value), its runs (faint
    dots), the chosen trial (star). ``None`` when no trial completed."""
    params = _params_by_key(result)[key]
    colors = label_colors([s.label for s in result.spaces])
    series = {label: [t for t in result.trials_of(label) if t.state == "complete"
                      and key in t.params] for label in params}
    series = {label: trials for label, trials in series.items() if trials}
    if not series:
        return None
    values = [t.params[key] for trials in series.values() for t in trials]
    numeric = _numeric(values)
    categories = list(dict.fromkeys(map(str, values)))
    fig = MplFigure(figsize=(7.0, 4.5))
    ax = fig.subplots()

    def xpos(v: Any) -> float:
        return float(v) if numeric else float(categories.index(str(v)))

    for label, trials in series.items():
        color = colors[label]
        by_value: dict[float, list[float]] = {}
        for t in trials:
            x = xpos(t.params[key])
            by_value.setdefault(x, []).append(t.value)
            runs = list(t.run_values.values())
            ax.scatter([x] * len(runs), runs, color=color, alpha=0.4, s=16, lw=0)
        xs = sorted(by_value)
        ax.plot(xs, [float(np.mean(by_value[x])) for x in xs], color=color, marker="o", lw=1.5,
                label=label)
        best = result.chosen.get(label)
        if best is not None and key in best.params:
            ax.scatter([xpos(best.params[key])], [best.value], color=color, marker="*", s=220,
                       edgecolors="black", zorder=5)
    if numeric and any(p.log_scale for p in params.values()) and min(values) > 0:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(key)
    ax.set_ylabel(f"objective: {result.objective.describe()}")
    ax.set_title(f"Sensitivity to {key} ({len(result.tuning_seeds)} tuning seeds)\n"
                 "line: trial mean over tuning seeds; faint dots: runs; star: chosen",
                 fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def sensitivity_name(key: str) -> str:
    """The figure name of one hyperparameter's sensitivity plot."""
    return "sensitivity_" + key.replace(".", "_").replace("/", "_")


def sensitivity_figures(result: TuneResult) -> dict[str, tuple[str, Path]]:
    """One sensitivity figure per hyperparameter key; name → (key, PNG)."""
    out = {}
    fig_dir = result.directory / FIGURES_DIR
    for key in _params_by_key(result):
        name = sensitivity_name(key)
        written = plot_sensitivity(result, key, fig_dir / f"{name}.png")
        if written is not None:
            out[name] = (key, written)
    return out


def _values(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def _protocol(result: TuneResult) -> list[Block]:
    exp = result.experiment
    tune = exp.tune
    assert tune is not None
    sampler = {"grid": f"grid: every point of each algorithm's grid, in an order seeded by "
                       f"{tune.sampler_seed}",
               "random": f"random (Optuna RandomSampler, seed {tune.sampler_seed})",
               "tpe": f"TPE (Optuna TPESampler, seed {tune.sampler_seed})"}[tune.sampler]
    budget = ", ".join(f"{v} {k}" for k, v in exp.budget.items())
    states = [t.state for t in result.trials]
    items = [
        f"Each algorithm searched its own space (below) with the same budget: "
        f"{result.trials_per_algorithm} trials, each trial one run per tuning seed "
        f"{result.tuning_seeds} (and task), "
        + (f"every run with a budget of {budget}." if budget else
           "every run with the same budget (the shared run config's).") + "",
        f"Sampler: {sampler}.",
        f"Objective: {result.objective.describe()}, averaged over the tuning seeds; the best "
        f"trial per algorithm was chosen.",
        f"Selection used tuning seeds {result.tuning_seeds} only; the confirmed comparison "
        f"runs on fresh seeds {result.confirm_seeds}, disjoint from them (checked when the "
        f"experiment is read).",
        f"Trials: {states.count('complete')} complete, {states.count('failed')} failed"
        + (f", {states.count('running')} unfinished" if "running" in states else "") + ".",
        f"Chosen values as a runnable experiment: {result.tuned_path} "
        f"(rlkit compare {result.tuned_path}).",
    ]
    return [Heading(2, "How it was tuned"), List(items)]


def _spaces_table(result: TuneResult) -> list[Block]:
    grid = result.experiment.tune is not None and result.experiment.tune.sampler == "grid"
    rows = [[s.label, p.key, p.describe(grid), s.source] for s in result.spaces
            for p in s.params]
    return [Heading(3, "Search spaces"),
            Table(["Algorithm", "Hyperparameter", "Space", "From"], rows)]


def _chosen_table(result: TuneResult) -> list[Block]:
    rows = []
    for space in result.spaces:
        trials = result.trials_of(space.label)
        done = sum(t.state == "complete" for t in trials)
        best = result.chosen.get(space.label)
        if best is None:
            rows.append([space.label, "— (no trial succeeded)", "—", "—",
                         f"{done} of {len(trials)}"])
            continue
        per_run = ", ".join(fmt(v) for v in best.run_values.values())
        rows.append([space.label, _values(best.params), f"#{best.number}", f"{fmt(best.value)} "
                     f"({per_run})", f"{done} of {len(trials)}"])
    blocks: list[Block] = [
        Heading(3, "Chosen values"),
        Table(["Algorithm", "Chosen", "Trial", "Objective on tuning seeds (per run)",
               "Trials complete"], rows),
        Paragraph(
            "The chosen trial's objective on the tuning seeds is biased upward: it is the best "
            f"of {result.trials_per_algorithm} noisy estimates. The confirmed comparison below "
            "is not, and it is the one to quote."),
    ]
    failed = [t for t in result.trials if t.state != "complete"]
    if failed:
        blocks += [Heading(3, "Failed trials"),
                   Table(["Algorithm", "Trial", "Values", "Why"],
                         [[t.label, f"#{t.number}", _values(t.params), t.error or t.state]
                          for t in failed])]
    return blocks


def _all_trials(result: TuneResult) -> list[Block]:
    rows = [[t.label, f"#{t.number}", _values(t.params), t.state, fmt(t.value)]
            for space in result.spaces for t in result.trials_of(space.label)]
    return [Heading(3, "Every trial"),
            Table(["Algorithm", "Trial", "Values", "State", "Objective"], rows)]


def _confirmation(result: TuneResult) -> list[Block]:
    blocks: list[Block] = [Heading(2, f"Confirmed comparison (fresh seeds {result.confirm_seeds})")]
    summary = result.confirmation
    if summary is None:
        return blocks + [Paragraph("No algorithm had a successful trial: nothing to confirm.")]
    blocks.append(Paragraph(
        f"The chosen values rerun on seeds never used for selection. Full report: "
        f"{CONFIRM_REPORT} (every metric, learning curves, costs)."))
    blocks += [warning(w) for w in summary.warnings]
    key = result.objective.metric.key
    table = summary.table(key)
    if table is None:
        return blocks + [Paragraph(f"No confirmation run logged {key}.")]
    blocks += metric_section(table, level=3)
    blocks += pairwise_section(summary, key, level=3, title="Pairwise (final value)")
    failed = summary.experiment.failed
    if failed:
        blocks += [Heading(3, "Failed confirmation runs"),
                   Table(["Run", "Error"], [[r.name, r.error or "—"] for r in failed])]
    return blocks


def tune_blocks(result: TuneResult, figures: dict[str, tuple[str, Path]]) -> list[Block]:
    """The whole tuning report as blocks."""
    blocks: list[Block] = [
        Heading(1, f"Tuning report: {result.experiment.name}"),
        Paragraph(f"Tuned from {result.source}; trials in {result.directory / 'tune'}."),
    ]
    blocks += _protocol(result)
    blocks += _spaces_table(result)
    blocks += _chosen_table(result)
    if figures:
        blocks.append(Heading(2, "Sensitivity"))
        blocks += [Figure(name, p, f"{key}: the objective of every complete trial against the "
                          f"value tried, per algorithm; a flat curve means the choice matters "
                          f"little, a sharp peak that the result depends on tuning.")
                   for name, (key, p) in figures.items()]
    blocks += _confirmation(result)
    blocks += _all_trials(result)
    return blocks


def write_tune_report(result: TuneResult, pm: PluginManager | None = None) -> dict[str, Path]:
    """Write the confirmation's own report, then ``report.md``/``report.html`` and the
    sensitivity figures into the tuning directory."""
    if result.chosen and result.confirm_dir.is_dir():
        result.confirmation, _ = write(result.confirm_dir, pm=pm)
    figures = sensitivity_figures(result)
    pages = write_pages(tune_blocks(result, figures), result.directory,
                        f"rlkit tuning report: {result.experiment.name}")
    return {**pages, **{f"figure:{k}": p for k, (_, p) in figures.items()}}


__all__ = ["plot_sensitivity", "sensitivity_figures", "tune_blocks", "write_tune_report"]
