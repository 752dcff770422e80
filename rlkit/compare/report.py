"""The comparison report: the numbers of :mod:`rlkit.compare.summary` laid out as blocks.

:func:`write_report` loads an experiment's JSONL logs, summarises them, draws the figures
and lays everything out once as a list of typed blocks (:mod:`rlkit.compare.render`), which
are written twice: Markdown next to PNG files (for the repository / a PR) and one
self-contained HTML page with the PNGs inlined (for mailing or attaching anywhere).

The words follow the numbers: an entry over fewer than 5 seeds is called a range, never a
confidence interval, and "best" says whether it was chosen on a separate selection split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from rlkit.compare.logs import load_experiment
from rlkit.compare.plots import CURVE_AXES, band_caption, curve_band_kinds, curve_name, make_figures
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
from rlkit.compare.stats import (
    ALPHA,
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    POWER,
    RECOMMENDED_SEEDS,
    Aggregate,
    Interval,
    PairComparison,
)
from rlkit.compare.summary import MetricTable, ScoreSummary, Summary, summarize
from rlkit.metrics import EVAL_KL, WALL, MetricInfo, info, select_key

FIGURES_DIR = "figures"

FIGURE_CAPTIONS = {
    "frontier": "Reward-KL frontier: final eval reward against final eval KL, one point per "
    "run; diamonds are algorithm means ± std. Up-left is better.",
    "proxy_vs_gold": "Proxy vs gold reward: each run's trajectory over evaluations (lines) and "
    "final point; gold falling while the proxy rises is reward hacking.",
}


# --------------------------------------------------------------------------- formatting


def fmt(x: float | None, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; '—' for NaN (not computable)."""
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.{digits}g}"


def fmt_pm(mean: float, std: float) -> str:
    """'mean ± std', or just the mean when the std is unknown (one run)."""
    return fmt(mean) if not math.isfinite(std) else f"{fmt(mean)} ± {fmt(std, 2)}"


def fmt_ci(iv: Interval) -> str:
    """'point [low, high]'."""
    return f"{fmt(iv.point)} [{fmt(iv.low)}, {fmt(iv.high)}]"


def fmt_p(p: float) -> str:
    """A p-value, with '<0.001' below that."""
    if not math.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_aggregate(agg: Aggregate, labelled: bool = False) -> str:
    """'point [low, high]' ('point' alone for one run); with ``labelled`` the cell names its
    own statistic and interval (for a column whose rows differ)."""
    if not math.isfinite(agg.point):
        return "—"
    text = fmt(agg.point) if agg.interval == "none" else (
        f"{fmt(agg.point)} [{fmt(agg.low)}, {fmt(agg.high)}]")
    return f"{agg.centre} {text} ({agg.interval_text()})" if labelled else text


def fmt_seeds(n: float) -> str:
    """Seeds per arm for 80% power: '∞' when no difference was observed."""
    if math.isinf(n):
        return "∞ (no difference observed)"
    return fmt(n, 6)


def aggregate_column(title: str, scores: list[ScoreSummary]) -> tuple[str, list[str]]:
    """A column of aggregates: when every row is the same kind the header names it
    (``Final IQM [95% CI]``, ``Final mean [range over 3 seeds]``); otherwise each cell does."""
    headers = {s.aggregate.header() for s in scores if s.n}
    if len(headers) <= 1:
        header = f"{title} {headers.pop()}" if headers else title
        return header, [fmt_aggregate(s.aggregate) for s in scores]
    return title, [fmt_aggregate(s.aggregate, labelled=True) for s in scores]


def metric_table_cells(table: MetricTable) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a metric table, shared by the report and the console."""
    best_title = _best_title(table)
    columns = [
        aggregate_column("Final", [r.final for r in table.rows]),
        aggregate_column(best_title, [r.best for r in table.rows]),
        aggregate_column("AUC", [r.auc for r in table.rows]),
    ]
    headers = (["Rank"] if table.ranked else []) + ["Algorithm", "n", "Final mean ± std"]
    headers += [h for h, _ in columns]
    rows = []
    for i, r in enumerate(table.rows):
        cells = [str(r.rank)] if table.ranked else []
        cells += [r.label, str(r.n), fmt_pm(r.final.spread.mean, r.final.spread.std)]
        for _, col in columns:
            cells.append(col[i])
        if len(table.best_sources) > 1:  # mixed: each best cell says where it comes from
            j = len(cells) - 2
            cells[j] = f"{cells[j]} ({r.best_source})"
        rows.append(cells)
    return headers, rows


def _best_title(table: MetricTable) -> str:
    if not table.ranked:
        return "Max over training"
    sources = table.best_sources
    if sources == {"selection split"}:
        return "Best (selection split)"
    if sources == {"in-sample"}:
        return "Best (in-sample)"
    return "Best"


def _verdict(pc: PairComparison) -> str:
    if not math.isfinite(pc.p_adjusted):
        return "no test (too few runs or no variance)"
    if pc.p_adjusted > ALPHA:
        return "not significant"
    winner = pc.a if pc.welch.diff > 0 else pc.b
    if pc.min_exact_p > ALPHA:
        return f"{winner} better (Welch only: rests on normality, see warning)"
    return f"{winner} better"


def _goal_text(minfo: MetricInfo) -> str:
    return {
        "max": "higher is better; ranked by the final value",
        "min": "lower is better; ranked by the final value",
    }.get(minfo.goal, "not ranked")


# --------------------------------------------------------------------------- sections


def _how_to_read(summary: Summary) -> Paragraph:
    conf = f"{DEFAULT_CONFIDENCE:.0%}"
    parts = [
        "Statistics use finished runs only. Final = the value at a run's last evaluation; "
        "best = its value at its best evaluation (see each table for how that step was "
        "chosen); AUC = the area under the run's learning curve against training samples "
        "(trapezoid rule over the evaluations) divided by the samples spanned, i.e. the "
        "curve's average height: it rewards getting there sooner."
    ]
    if summary.any_range:
        parts.append(
            f"With fewer than {RECOMMENDED_SEEDS} seeds an algorithm's entry is its mean (its "
            "IQM once 4 runs let the interquartile mean trim something) with the range over "
            "its seeds, min to max, labelled as a range: a bootstrap interval from so few "
            "seeds would undercover, so none is claimed."
        )
    if summary.any_ci:
        parts.append(
            f"With {RECOMMENDED_SEEDS} or more seeds: IQM (interquartile mean over runs, "
            f"rliable) with a {conf} stratified percentile bootstrap interval "
            f"({summary.n_resamples} resamples, seed {summary.seed})."
        )
    return Paragraph(" ".join(parts))


def summary_blocks(summary: Summary) -> list[Block]:
    """Runs, seeds, failures, and how to read the tables."""
    exp = summary.experiment
    items = [
        (f"Runs: {len(exp.runs)} total; {len(exp.finished)} finished, {len(exp.failed)} "
         f"failed, {len(exp.unfinished)} not finished (running or no status)."),
        f"Tasks: {', '.join(exp.tasks)}.",
    ]
    for label, runs in exp.groups(finished_only=False).items():
        done = sorted(r.seed for r in runs if r.finished)
        algos = sorted({r.algorithm for r in runs})
        items.append(f"{label} (algorithm {', '.join(algos)}): {len(done)} of {len(runs)} runs "
                     f"finished; seeds {', '.join(map(str, done)) or 'none'}.")
    for r in exp.runs:
        if r.skipped_lines:
            items.append(f"{r.name}: skipped {r.skipped_lines} unreadable line(s) of "
                         f"metrics.jsonl.")
    blocks: list[Block] = [Heading(2, "Summary"), List(items), _how_to_read(summary)]
    if exp.failed:
        blocks += [
            Heading(3, "Failed runs"),
            Table(["Run", "Algorithm", "Seed", "Task", "Error"],
                  [[r.name, r.label, str(r.seed), r.task, r.error or "(no error recorded)"]
                   for r in exp.failed]),
        ]
    if exp.unfinished:
        blocks += [
            Heading(3, "Runs not finished (excluded)"),
            List([f"{r.name} ({r.label}, seed {r.seed}): {r.state}" for r in exp.unfinished]),
        ]
    return blocks


def metric_section(table: MetricTable, level: int = 3) -> list[Block]:
    """One metric: heading, table, and what its "best" and its ranking mean."""
    minfo = table.info
    headers, rows = metric_table_cells(table)
    blocks: list[Block] = [
        Heading(level, f"{minfo.title} [{minfo.unit}] ({_goal_text(minfo)})"),
        Table(headers, rows),
    ]
    if minfo.key == EVAL_KL:
        blocks.append(Paragraph(
            "KL measures how far the policy moved from the reference: lower stays closer to "
            "it. It is the price paid for reward, not a score, so it is not ranked; read it "
            "together with reward on the frontier figure."))
    if table.ranked:
        sel = select_key(minfo.key)
        if table.best_sources == {"selection split"}:
            blocks.append(Paragraph(
                f"Best: the evaluation step is chosen by {sel}, measured on a selection split "
                f"of the eval prompts disjoint from those {minfo.key} is measured on, and "
                f"{minfo.key} at that step is reported: an unbiased estimate of the selected "
                f"checkpoint."))
        elif table.best_sources == {"in-sample"}:
            blocks.append(Paragraph(
                f"Best is in-sample: the best of the very evaluations it reports (the logs "
                f"carry no {sel} selection split), so it is biased upward, more so the more "
                f"often a run was evaluated. Compare final or AUC."))
        else:
            blocks.append(Paragraph(
                f"Best: chosen on the {sel} selection split where a run logged it, in-sample "
                f"(biased upward) where it did not; each cell says which."))
    close = table.indistinguishable_from_leader()
    lead = table.leader
    if close and lead is not None:
        what = ("ranges" if lead.final.aggregate.interval == "range" else "intervals")
        blocks.append(Paragraph(
            f"Not clearly separated from the leader ({lead.label}): {', '.join(close)} "
            f"(their final {what} overlap)."))
    return blocks


def metric_blocks(summary: Summary) -> list[Block]:
    """Every metric's section."""
    blocks: list[Block] = [Heading(2, "Results per metric")]
    if not summary.tables:
        blocks.append(Paragraph("No finished run logged any eval metric; nothing to compare."))
    for table in summary.tables.values():
        blocks += metric_section(table)
    return blocks


def pairwise_section(summary: Summary, key: str, level: int = 3,
                     title: str | None = None) -> list[Block]:
    """The pairwise table of one ranked metric (headed by the metric's title)."""
    pairs = summary.pairwise.get(key, [])
    if not pairs:
        return []
    with_ci = all(min(pc.n_a, pc.n_b) >= RECOMMENDED_SEEDS for pc in pairs)
    conf = f" [{DEFAULT_CONFIDENCE:.0%} CI]" if with_ci else ""
    rows = []
    for pc in pairs:
        ci = min(pc.n_a, pc.n_b) >= RECOMMENDED_SEEDS
        poi = fmt_ci(pc.poi) if ci else fmt(pc.poi.point)
        diff = (f"{fmt(pc.welch.diff)} [{fmt(pc.welch.low)}, {fmt(pc.welch.high)}]" if ci
                else fmt(pc.welch.diff))
        if ci and not with_ci:
            poi, diff = f"{poi} ({DEFAULT_CONFIDENCE:.0%} CI)", f"{diff} ({DEFAULT_CONFIDENCE:.0%} CI)"
        rows.append([
            pc.a, pc.b, f"{pc.n_a} vs {pc.n_b}", poi, diff,
            f"{fmt(pc.welch.t, 3)} ({fmt(pc.welch.df, 3)})", fmt_p(pc.welch.p),
            fmt_p(pc.p_adjusted), fmt_seeds(pc.seeds_for_power), _verdict(pc),
        ])
    headers = ["A", "B", "seeds", f"P(A > B){conf}", f"mean A − B{conf}", "Welch t (df)",
               "p", "p (BH)", f"seeds per arm for {POWER:.0%} power", "verdict"]
    heading = title or (summary.catalog[key] if key in summary.catalog else info(key)).title
    return [Heading(level, heading), Table(headers, rows)]


def pairwise_blocks(summary: Summary) -> list[Block]:
    """Pairwise comparisons of every ranked metric, with how to read them."""
    if not summary.pairwise:
        return []
    few = any(min(pc.n_a, pc.n_b) < RECOMMENDED_SEEDS
              for pairs in summary.pairwise.values() for pc in pairs)
    intervals = ("Intervals (bootstrap for P, Welch for the difference) are shown only where "
                 f"both arms have {RECOMMENDED_SEEDS}+ seeds. " if few else
                 f"Brackets: {DEFAULT_CONFIDENCE:.0%} intervals (bootstrap for P, Welch for the "
                 "difference). ")
    blocks: list[Block] = [
        Heading(2, "Pairwise comparisons (final value)"),
        Paragraph(
            "P(A > B): probability that a run of A beats a run of B (0.5 = no difference). "
            "Welch's t-test on the difference of means; p (BH) is adjusted for the number of "
            f"pairs (Benjamini-Hochberg); significant at {ALPHA:g}. " + intervals +
            f"Seeds per arm for {POWER:.0%} power: how many seeds each algorithm would need for "
            f"a two-sided test at {ALPHA:g} to detect the observed difference δ with "
            f"probability {POWER:.0%}, from the observed variances (normal approximation to "
            f"Welch's test): n = ⌈(z_(1−α/2) + z_(power))² · (s_A² + s_B²) / δ²⌉ with "
            "(z_0.975 + z_0.8)² ≈ 7.85. The inputs are themselves noisy: read it as an order "
            "of magnitude."),
    ]
    if summary.warnings:
        blocks.append(warning("Few seeds: read the warning at the top before trusting a "
                              "verdict."))
    for key in summary.pairwise:
        blocks += pairwise_section(summary, key)
    return blocks


def noise_blocks(summary: Summary) -> list[Block]:
    """Training-seed noise apart from evaluation noise, when the logs carry the latter."""
    if not summary.noise:
        return []
    rows = [[n.label, n.metric, str(n.n), fmt(n.between_seed_std), fmt(n.within_run_eval_std),
             str(n.eval_seeds) if n.eval_seeds else "—", fmt(n.eval_se), fmt(n.training_std)]
            for n in summary.noise]
    headers = ["Algorithm", "Metric", "runs", "std across training seeds",
               "eval std within a run (across eval seeds)", "eval seeds k",
               "eval noise in the logged mean (÷√k)", "training std, eval noise removed"]
    return [
        Heading(2, "Training noise and evaluation noise"),
        Paragraph(
            "Each logged eval value is a mean over k evaluation seeds. Its spread across "
            "training seeds mixes two sources: runs that learned differently (training noise) "
            "and the finite evaluation (evaluation noise, standard error = eval std / √k). The "
            "last column removes the second: sqrt(max(0, between² − (eval std/√k)²)). When the "
            "evaluation noise is comparable to the training spread, more eval prompts, samples "
            "per prompt or eval seeds buy more than more training seeds."),
        Table(headers, rows),
    ]


def cost_blocks(summary: Summary) -> list[Block]:
    """What each algorithm spent, in every budget unit the logs carry."""
    if not summary.costs:
        return []
    keys = summary.cost_keys
    headers = ["Algorithm", "n"]
    headers += [f"{info(k).title} [{info(k).unit}]" for k in keys]
    headers.append("Mean throughput [samples/s]")
    rows = []
    for c in summary.costs:
        cells = [c.label, str(c.n)]
        for k in keys:
            spread = c.budget[k]
            cells.append(fmt_pm(spread.mean, spread.std) if k == WALL else fmt(spread.mean, 6))
        cells.append(fmt(c.samples_per_s))
        rows.append(cells)
    return [
        Heading(2, "Cost"),
        Paragraph("Per run, mean over finished runs (wall time ± std): the budgets spent at the "
                  "last step and the peak memory. The learning curves below are drawn against "
                  "each of these budgets the logs carry."),
        Table(headers, rows),
    ]


def figure_caption(name: str, summary: Summary) -> str:
    """The caption of a figure written by :func:`~rlkit.compare.plots.make_figures`."""
    if name in FIGURE_CAPTIONS:
        return FIGURE_CAPTIONS[name]
    for key, minfo in summary.catalog.items():
        for x_key in CURVE_AXES:
            if curve_name(key, x_key) == name:
                kinds = curve_band_kinds(summary.experiment, key, x_key)
                return (f"{minfo.title} against {info(x_key).title}: mean over seeds; "
                        f"{band_caption(kinds)}.")
    return name


def figure_blocks(summary: Summary, figures: Mapping[str, Path]) -> list[Block]:
    """Learning curves grouped by x-axis, then the final-evaluation figures."""
    if not figures:
        return []
    blocks: list[Block] = [Heading(2, "Figures")]
    for x_key, short in CURVE_AXES.items():
        names = [n for n in figures if n.startswith("curve_") and n.endswith(f"_vs_{short}")]
        if names:
            blocks.append(Heading(3, f"Learning curves against {info(x_key).title}"))
            blocks += [Figure(n, figures[n], figure_caption(n, summary)) for n in names]
    rest = [n for n in figures if not n.startswith("curve_")]
    if rest:
        blocks.append(Heading(3, "Final evaluation"))
        blocks += [Figure(n, figures[n], figure_caption(n, summary)) for n in rest]
    return blocks


def build_blocks(summary: Summary, figures: Mapping[str, Path]) -> list[Block]:
    """The whole report as renderer-neutral blocks."""
    exp = summary.experiment
    blocks: list[Block] = [
        Heading(1, f"Comparison report: {exp.name}"),
        Paragraph(f"Computed from the JSONL logs in {exp.path}."),
    ]
    blocks += [warning(w) for w in summary.warnings]
    blocks += summary_blocks(summary)
    blocks += metric_blocks(summary)
    blocks += pairwise_blocks(summary)
    blocks += noise_blocks(summary)
    blocks += cost_blocks(summary)
    blocks += figure_blocks(summary, figures)
    return blocks


# --------------------------------------------------------------------------- entry points


def _remove_stale_figures(fig_dir: Path, keep: Mapping[str, Path]) -> None:
    """Delete figures a previous report wrote that this one no longer supports."""
    if not fig_dir.is_dir():
        return
    kept = {p.resolve() for p in keep.values()}
    for png in fig_dir.glob("*.png"):
        ours = png.name.startswith("curve_") or png.stem in FIGURE_CAPTIONS
        if ours and png.resolve() not in kept:
            png.unlink()


def write_comparison(summary: Summary) -> dict[str, Path]:
    """Render an already computed :class:`~rlkit.compare.summary.Summary` into its
    experiment directory.

    Writes ``report.md``, ``report.html`` and ``figures/*.png``; returns
    ``{"markdown": ..., "html": ..., "figure:<name>": ...}``.
    """
    exp = summary.experiment
    fig_dir = exp.path / FIGURES_DIR
    figures = make_figures(exp, fig_dir, seed=summary.seed, catalog=summary.catalog)
    _remove_stale_figures(fig_dir, figures)
    pages = write_pages(build_blocks(summary, figures), exp.path, f"rlkit report: {exp.name}")
    return {**pages, **{f"figure:{name}": path for name, path in figures.items()}}


def write_report(
    exp_dir: Path | str, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
    catalog: Mapping[str, MetricInfo] | None = None,
) -> dict[str, Path]:
    """Load ``exp_dir``, summarise it and write ``report.md``, ``report.html`` and
    ``figures/*.png`` into it (see :func:`write_comparison` for the returned mapping).

    ``catalog``: the metric catalogue (default canonical; the CLI passes the plugins'
    metrics too). Deterministic for a given ``seed``: rerunning on the same logs rewrites the
    same numbers. Raises :class:`~rlkit.errors.RlkitError` when the directory holds no run.
    """
    exp = load_experiment(exp_dir)
    return write_comparison(summarize(exp, n_resamples=n_resamples, seed=seed, catalog=catalog))


__all__ = ["FIGURES_DIR", "build_blocks", "cost_blocks", "figure_blocks",
           "fmt", "fmt_aggregate", "fmt_ci", "fmt_p", "fmt_pm", "metric_blocks",
           "metric_section", "metric_table_cells", "noise_blocks", "pairwise_blocks",
           "pairwise_section", "summary_blocks", "write_comparison", "write_report"]
