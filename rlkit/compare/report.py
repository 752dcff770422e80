"""The comparison report, computed purely from an experiment's JSONL logs.

:func:`summarize` turns the logs into numbers (:class:`Comparison`); :func:`write_report`
lays those numbers out once as a list of blocks and renders the blocks twice: Markdown next
to PNG files (for the repository / a PR) and one self-contained HTML page with the PNGs
inlined as base64 (for mailing or attaching anywhere).
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlkit.compare.logs import (
    EVAL_METRICS,
    X_SAMPLES,
    X_WALL,
    Experiment,
    MetricInfo,
    RunLog,
    load_experiment,
)
from rlkit.compare.plots import make_figures
from rlkit.compare.stats import (
    DEFAULT_RESAMPLES,
    Interval,
    PairComparison,
    few_seeds_warning,
    iqm_ci,
    mean_std,
    pairwise_comparisons,
)

#: Metrics compared pairwise (ranked metrics only: a "win" on KL means nothing by itself).
PAIRWISE_METRICS = ("eval/reward", "eval/gold_reward")
ALPHA = 0.05
FIGURES_DIR = "figures"

FIGURE_CAPTIONS = {
    "frontier": "Reward-KL frontier: final eval reward against final eval KL, one point per "
    "run; diamonds are algorithm means ± std. Up-left is better.",
    "proxy_vs_gold": "Proxy vs gold reward: each run's trajectory over evaluations (lines) and "
    "final point; gold falling while the proxy rises is reward hacking.",
}


# --------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class MetricRow:
    """One algorithm's line in a metric table."""

    label: str
    n: int
    final_mean: float
    final_std: float
    final_iqm: Interval
    best_mean: float
    best_std: float
    best_iqm: Interval
    rank: int | None


@dataclass(frozen=True)
class MetricTable:
    """Final and best values of one metric for every algorithm, ranked when it has a goal."""

    info: MetricInfo
    rows: list[MetricRow]

    @property
    def ranked(self) -> bool:
        """Whether this metric has a direction and so a ranking."""
        return self.info.goal in ("max", "min")

    def indistinguishable_from_leader(self) -> list[str]:
        """Labels whose final-IQM interval overlaps the leader's: not clearly separated."""
        ranked = [r for r in self.rows if r.rank == 1]
        if not ranked:
            return []
        lead = ranked[0].final_iqm
        return [
            r.label
            for r in self.rows
            if r.rank != 1 and r.final_iqm.low <= lead.high and lead.low <= r.final_iqm.high
        ]


@dataclass(frozen=True)
class CostRow:
    """What one algorithm's runs cost, averaged over its finished runs."""

    label: str
    n: int
    wall_s_mean: float
    wall_s_std: float
    samples_mean: float
    samples_per_s: float
    peak_memory_mb: float


@dataclass
class Comparison:
    """Everything the report shows, computed from the logs (no rendering here)."""

    experiment: Experiment
    tables: dict[str, MetricTable]
    pairwise: dict[str, list[PairComparison]]
    costs: list[CostRow]
    warnings: list[str] = field(default_factory=list)
    n_resamples: int = DEFAULT_RESAMPLES
    seed: int = 0


def _metric_table(exp: Experiment, info: MetricInfo, n_resamples: int, seed: int) -> MetricTable:
    best_goal = info.goal if info.goal in ("max", "min") else "max"
    rows: list[MetricRow] = []
    for i, label in enumerate(exp.groups()):
        final = exp.score_matrix(label, info.key, "final")
        best = exp.score_matrix(label, info.key, "best", best_goal)
        n = int(np.isfinite(final).sum())
        if n == 0:
            continue
        fm, fs = mean_std(final)
        bm, bs = mean_std(best)
        rows.append(
            MetricRow(
                label=label,
                n=n,
                final_mean=fm,
                final_std=fs,
                final_iqm=iqm_ci(final, n_resamples=n_resamples, seed=seed + i),
                best_mean=bm,
                best_std=bs,
                best_iqm=iqm_ci(best, n_resamples=n_resamples, seed=seed + 1000 + i),
                rank=None,
            )
        )
    if info.goal in ("max", "min"):
        rows = _ranked(rows, higher_is_better=info.goal == "max")
    return MetricTable(info, rows)


def _ranked(rows: list[MetricRow], higher_is_better: bool) -> list[MetricRow]:
    """Sort by final IQM and assign competition ranks (1, 2, 2, 4); ties share a rank."""
    sign = -1.0 if higher_is_better else 1.0
    ordered = sorted(rows, key=lambda r: sign * r.final_iqm.point)
    out: list[MetricRow] = []
    for i, row in enumerate(ordered):
        same = out and out[-1].final_iqm.point == row.final_iqm.point
        rank = out[-1].rank if same else i + 1
        out.append(MetricRow(**{**row.__dict__, "rank": rank}))
    return out


def _run_wall_s(run: RunLog) -> float:
    """Wall time of a run: its status file, else the last logged ``train/wall_s``."""
    return run.wall_s if run.wall_s is not None else run.final(X_WALL)


def _cost_rows(exp: Experiment) -> list[CostRow]:
    rows = []
    for label, runs in exp.groups().items():
        walls = np.asarray([_run_wall_s(r) for r in runs])
        samples = np.asarray([r.final(X_SAMPLES) for r in runs])
        rates = []
        for r, w, s in zip(runs, walls, samples, strict=True):
            logged = r.values("perf/samples_per_s")
            rates.append(float(logged.mean()) if logged.size else s / w if w > 0 else math.nan)
        peaks = [r.best("perf/peak_memory_mb", "max") for r in runs]
        wm, ws = mean_std(walls)
        rows.append(
            CostRow(
                label=label,
                n=len(runs),
                wall_s_mean=wm,
                wall_s_std=ws,
                samples_mean=_nanmean(samples),
                samples_per_s=_nanmean(rates),
                peak_memory_mb=_nanmean(peaks),
            )
        )
    return rows


def _nanmean(values: list[float] | np.ndarray) -> float:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def _seed_warnings(exp: Experiment, tables: dict[str, MetricTable]) -> list[str]:
    """The few-seeds warning for the two smallest groups of the headline metric."""
    table = next((t for t in tables.values() if t.rows), None)
    if table is None:
        return []
    sizes = sorted(r.n for r in table.rows)
    n, m = (sizes[0], sizes[1]) if len(sizes) > 1 else (sizes[0], sizes[0])
    warning = few_seeds_warning(n, m, ALPHA)
    return [warning] if warning else []


def summarize(exp: Experiment, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Comparison:
    """Compute every table of the report from the finished runs of ``exp``.

    Per metric: final (last evaluation) and best values per run, summarised per label as
    mean ± std and IQM with a 95% stratified-bootstrap interval; pairwise P(improvement) and
    BH-adjusted Welch tests for the reward metrics; costs; the few-seeds warning.
    """
    tables = {
        key: _metric_table(exp, info, n_resamples, seed)
        for key, info in EVAL_METRICS.items()
        if exp.has(key)
    }
    pairwise = {}
    for key in PAIRWISE_METRICS:
        if key in tables and len(tables[key].rows) > 1:
            # leader first, so that P(A > B) mostly reads as "how sure is the lead"
            scores = {r.label: exp.score_matrix(r.label, key, "final") for r in tables[key].rows}
            pairwise[key] = pairwise_comparisons(
                scores, EVAL_METRICS[key].goal, n_resamples=n_resamples, seed=seed
            )
    return Comparison(
        experiment=exp,
        tables=tables,
        pairwise=pairwise,
        costs=_cost_rows(exp),
        warnings=_seed_warnings(exp, tables),
        n_resamples=n_resamples,
        seed=seed,
    )


# --------------------------------------------------------------------------- formatting


def fmt(x: float, digits: int = 4) -> str:
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


def metric_table_cells(table: MetricTable) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a metric table, shared by the report and the console."""
    goal = table.info.goal
    best_name = {"max": "Best", "min": "Best"}.get(goal, "Max over training")
    headers = ["Rank"] if table.ranked else []
    headers += [
        "Algorithm",
        "n",
        "Final mean ± std",
        "Final IQM [95% CI]",
        f"{best_name} mean ± std",
        f"{best_name} IQM [95% CI]",
    ]
    rows = []
    for r in table.rows:
        cells = [str(r.rank)] if table.ranked else []
        cells += [
            r.label,
            str(r.n),
            fmt_pm(r.final_mean, r.final_std),
            fmt_ci(r.final_iqm),
            fmt_pm(r.best_mean, r.best_std),
            fmt_ci(r.best_iqm),
        ]
        rows.append(cells)
    return headers, rows


def _verdict(pc: PairComparison) -> str:
    if not math.isfinite(pc.p_adjusted):
        return "no test (too few runs or no variance)"
    if pc.p_adjusted > ALPHA:
        return "not significant"
    winner = pc.a if pc.welch.diff > 0 else pc.b
    if pc.min_exact_p > ALPHA:
        return f"{winner} better (Welch only: rests on normality, see warning)"
    return f"{winner} better"


def _goal_text(info: MetricInfo) -> str:
    return {
        "max": "higher is better; ranked by IQM of the final value",
        "min": "lower is better; ranked by IQM of the final value",
    }.get(info.goal, "not ranked")


# --------------------------------------------------------------------------- blocks

Block = tuple  # ("h", level, text) | ("p", text) | ("warn", text) | ("list", items)
#               ("table", headers, rows) | ("figure", name, path, caption)


def _summary_blocks(comp: Comparison) -> list[Block]:
    exp = comp.experiment
    groups = exp.groups(finished_only=False)
    items = [
        (
            f"Runs: {len(exp.runs)} total; {len(exp.finished)} finished, "
            f"{len(exp.failed)} failed, {len(exp.unfinished)} not finished (running or no status)."
        ),
        f"Tasks: {', '.join(exp.tasks)}.",
    ]
    for label, runs in groups.items():
        done = sorted(r.seed for r in runs if r.finished)
        algos = sorted({r.algorithm for r in runs})
        items.append(
            f"{label} (algorithm {', '.join(algos)}): {len(done)} of {len(runs)} runs finished; "
            f"seeds {', '.join(map(str, done)) or 'none'}."
        )
    skipped = [r for r in exp.runs if r.skipped_lines]
    for r in skipped:
        items.append(f"{r.name}: skipped {r.skipped_lines} unreadable line(s) of metrics.jsonl.")
    blocks: list[Block] = [
        ("h", 2, "Summary"),
        ("list", items),
        (
            "p",
            (
                "Statistics use finished runs only. Final = value at a run's last evaluation; "
                "best = its best evaluation. IQM = interquartile mean over runs (rliable); "
                "intervals are 95% stratified percentile bootstrap "
                f"({comp.n_resamples} resamples, seed {comp.seed})."
            ),
        ),
    ]
    if exp.failed:
        blocks.append(("h", 3, "Failed runs"))
        blocks.append(
            (
                "table",
                ["Run", "Algorithm", "Seed", "Task", "Error"],
                [
                    [r.name, r.label, str(r.seed), r.task, (r.error or "(no error recorded)")]
                    for r in exp.failed
                ],
            )
        )
    if exp.unfinished:
        blocks.append(("h", 3, "Runs not finished (excluded)"))
        blocks.append(
            ("list", [f"{r.name} ({r.label}, seed {r.seed}): {r.state}" for r in exp.unfinished])
        )
    return blocks


def _metric_blocks(comp: Comparison) -> list[Block]:
    blocks: list[Block] = [("h", 2, "Results per metric")]
    if not comp.tables:
        blocks.append(("p", "No finished run logged any eval metric; nothing to compare."))
    for table in comp.tables.values():
        info = table.info
        blocks.append(("h", 3, f"{info.title} [{info.unit}] ({_goal_text(info)})"))
        headers, rows = metric_table_cells(table)
        blocks.append(("table", headers, rows))
        if info.key == "eval/kl":
            blocks.append(
                (
                    "p",
                    (
                        "KL measures how far the policy moved from the reference: lower stays "
                        "closer to it. It is the price paid for reward, not a score, so it is "
                        "not ranked; read it together with reward on the frontier figure."
                    ),
                )
            )
        close = table.indistinguishable_from_leader()
        if close:
            leader = next(r.label for r in table.rows if r.rank == 1)
            blocks.append(
                (
                    "p",
                    (
                        f"Not clearly separated from the leader ({leader}): {', '.join(close)} "
                        "(their IQM intervals overlap)."
                    ),
                )
            )
    return blocks


def _pairwise_blocks(comp: Comparison) -> list[Block]:
    if not comp.pairwise:
        return []
    blocks: list[Block] = [
        ("h", 2, "Pairwise comparisons (final value)"),
        (
            "p",
            (
                "P(A > B): probability that a run of A beats a run of B (0.5 = no difference), "
                "with a 95% bootstrap interval. Welch's t-test on the difference of means; "
                "p (BH) is adjusted for the number of pairs (Benjamini-Hochberg); significant "
                f"at {ALPHA:g}."
            ),
        ),
    ]
    if comp.warnings:
        blocks.append(("warn", "Few seeds: read the warning at the top before trusting a verdict."))
    for key, pairs in comp.pairwise.items():
        info = EVAL_METRICS[key]
        blocks.append(("h", 3, info.title))
        rows = [
            [
                pc.a,
                pc.b,
                f"{pc.n_a} vs {pc.n_b}",
                fmt_ci(pc.poi),
                f"{fmt(pc.welch.diff)} [{fmt(pc.welch.low)}, {fmt(pc.welch.high)}]",
                f"{fmt(pc.welch.t, 3)} ({fmt(pc.welch.df, 3)})",
                fmt_p(pc.welch.p),
                fmt_p(pc.p_adjusted),
                _verdict(pc),
            ]
            for pc in pairs
        ]
        headers = [
            "A",
            "B",
            "seeds",
            "P(A > B) [95% CI]",
            "mean A - B [95% CI]",
            "Welch t (df)",
            "p",
            "p (BH)",
            "verdict",
        ]
        blocks.append(("table", headers, rows))
    return blocks


def _cost_blocks(comp: Comparison) -> list[Block]:
    if not comp.costs:
        return []
    rows = [
        [
            c.label,
            str(c.n),
            fmt_pm(c.wall_s_mean, c.wall_s_std),
            fmt(c.samples_mean, 6),
            fmt(c.samples_per_s),
            fmt(c.peak_memory_mb),
        ]
        for c in comp.costs
    ]
    headers = [
        "Algorithm",
        "n",
        "Wall time per run [s]",
        "Samples per run",
        "Mean throughput [samples/s]",
        "Peak memory [MB]",
    ]
    return [("h", 2, "Cost"), ("table", headers, rows)]


def _figure_caption(name: str) -> str:
    if name in FIGURE_CAPTIONS:
        return FIGURE_CAPTIONS[name]
    # curve_<metric with / → _>_vs_<samples|wall>
    stem, _, axis = name.removeprefix("curve_").rpartition("_vs_")
    key = next((k for k in EVAL_METRICS if k.replace("/", "_") == stem), stem)
    title = EVAL_METRICS[key].title if key in EVAL_METRICS else key
    against = "training samples" if axis == "samples" else "wall time"
    return f"{title} against {against}: mean over seeds with a 95% bootstrap band."


def build_blocks(comp: Comparison, figures: dict[str, Path]) -> list[Block]:
    """The whole report as renderer-neutral blocks."""
    exp = comp.experiment
    blocks: list[Block] = [
        ("h", 1, f"Comparison report: {exp.name}"),
        ("p", f"Computed from the JSONL logs in {exp.path}."),
    ]
    blocks += [("warn", w) for w in comp.warnings]
    blocks += _summary_blocks(comp)
    blocks += _metric_blocks(comp)
    blocks += _pairwise_blocks(comp)
    blocks += _cost_blocks(comp)
    if figures:
        blocks.append(("h", 2, "Figures"))
        blocks += [("figure", n, p, _figure_caption(n)) for n, p in figures.items()]
    return blocks


# --------------------------------------------------------------------------- renderers


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block], base: Path) -> str:
    """Markdown with figures linked relative to ``base`` (the report's directory)."""
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"{'#' * block[1]} {block[2]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "warn":
            out.append(f"> **Warning:** {block[1]}")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines = [
                "| " + " | ".join(_md_cell(h) for h in headers) + " |",
                "|" + "|".join("---" for _ in headers) + "|",
            ]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "figure":
            rel = block[2].relative_to(base).as_posix()
            out.append(f"![{block[1]}]({rel})\n\n*{block[3]}*")
    return "\n\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.92em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} tr:nth-child(even) td{background:#fafafa}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:0.6em 1em;margin:1em 0}
figure{margin:1.5em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:0.9em;color:#555}
"""


def render_html(blocks: list[Block], title: str) -> str:
    """One self-contained HTML page: CSS inline, every figure embedded as a PNG data URI."""
    esc = html.escape
    body: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{esc(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{esc(block[1])}</p>")
        elif kind == "warn":
            body.append(f'<div class="warn"><strong>Warning:</strong> {esc(block[1])}</div>')
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in block[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block[2]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "figure":
            data = base64.b64encode(block[2].read_bytes()).decode("ascii")
            body.append(
                f'<figure><img alt="{esc(block[1])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(block[3])}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


# --------------------------------------------------------------------------- entry point


def _remove_stale_figures(fig_dir: Path, keep: dict[str, Path]) -> None:
    """Delete figures a previous report wrote that this one no longer supports."""
    if not fig_dir.is_dir():
        return
    kept = {p.resolve() for p in keep.values()}
    for png in fig_dir.glob("*.png"):
        ours = png.name.startswith("curve_") or png.stem in FIGURE_CAPTIONS
        if ours and png.resolve() not in kept:
            png.unlink()


def write_comparison(comp: Comparison) -> dict[str, Path]:
    """Render an already computed :class:`Comparison` into its experiment directory.

    Writes ``report.md``, ``report.html`` and ``figures/*.png``; returns
    ``{"markdown": ..., "html": ..., "figure:<name>": ...}``.
    """
    exp = comp.experiment
    fig_dir = exp.path / FIGURES_DIR
    figures = make_figures(exp, fig_dir, seed=comp.seed)
    _remove_stale_figures(fig_dir, figures)
    blocks = build_blocks(comp, figures)
    md_path = exp.path / "report.md"
    html_path = exp.path / "report.html"
    md_path.write_text(render_markdown(blocks, exp.path), encoding="utf-8")
    html_path.write_text(render_html(blocks, f"rlkit report: {exp.name}"), encoding="utf-8")
    return {
        "markdown": md_path,
        "html": html_path,
        **{f"figure:{name}": path for name, path in figures.items()},
    }


def write_report(
    exp_dir: Path | str, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> dict[str, Path]:
    """Load ``exp_dir``, compute the comparison and write ``report.md``, ``report.html`` and
    ``figures/*.png`` into it (see :func:`write_comparison` for the returned mapping).

    Deterministic for a given ``seed``: rerunning on the same logs rewrites the same numbers.
    Raises :class:`~rlkit.errors.RlkitError` when the directory holds no run.
    """
    exp = load_experiment(exp_dir)
    return write_comparison(summarize(exp, n_resamples=n_resamples, seed=seed))
