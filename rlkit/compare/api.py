"""Comparisons from Python: the functions behind ``rlkit compare``, ``rlkit report`` and
``rlkit tune`` (``rlkit.compare``/``rlkit.report`` re-export the first two).

```python
from rlkit.compare.api import compare, report
exp_dir = compare("experiments/quickstart.yaml", ["train.threads=1"], workers=2)
summary = report(exp_dir)            # typed numbers: summary.tables["eval/gold_reward"] ...
```
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from rlkit.compare.experiment import PlannedRun, load_experiment
from rlkit.compare.logs import load_experiment as load_logs
from rlkit.compare.render import render_markdown
from rlkit.compare.report import metric_section, write_comparison
from rlkit.compare.runner import RunResult, run_grid
from rlkit.compare.summary import Summary, summarize
from rlkit.metrics import MetricInfo, catalogue
from rlkit.plugins import PluginManager, make_plugin_manager

#: Where progress lines go (``click.echo`` from the CLI; nothing by default from Python).
Echo = Callable[[str], None]

DEFAULT_OUT = "runs"


def _quiet(_: str) -> None:
    pass


def metric_catalog(pm: PluginManager) -> dict[str, MetricInfo]:
    """The canonical metrics plus every metric a loaded plugin declared."""
    return catalogue(pm.registry.metrics.values())


def prepare_tasks(planned: Iterable[PlannedRun], pm: PluginManager, echo: Echo = _quiet) -> None:
    """Build each task's cached artifacts once, here, rather than racing in every worker."""
    seen = set()
    for p in planned:
        task = p.config.task
        key = (task.name, repr(sorted(task.options.items())))
        if task.name is not None and key not in seen:
            seen.add(key)
            echo(f"preparing task '{task.name}' ...")
            pm.task(task.name)(task.options).prepare()


def run_planned(planned: list[PlannedRun], exp_dir: Path, *, pm: PluginManager,
                plugin_files: Iterable[str] = (), workers: int | None = 1,
                executor: str = "local", echo: Echo = _quiet,
                prepare: bool = True) -> list[RunResult]:
    """Prepare the tasks (unless already done), then run every planned run not yet finished
    (resumable, isolated), echoing one line per run."""
    if prepare:
        prepare_tasks(planned, pm, echo)
    done = [0]

    def progress(result: RunResult) -> None:
        done[0] += 1
        line = f"  [{done[0]}/{len(planned)}] {result.name}: {result.state}"
        echo(line + (f" — {result.error}" if result.error else ""))

    start = time.perf_counter()
    configs = [p.config.model_dump(mode="json") for p in planned]
    results = run_grid(configs, exp_dir, executor=executor, workers=workers,
                       plugin_files=list(plugin_files), on_result=progress)
    echo(f"grid done in {time.perf_counter() - start:.0f} s: "
         f"{sum(r.state == 'finished' for r in results)} ran, "
         f"{sum(r.state == 'skipped' for r in results)} already finished, "
         f"{sum(r.state == 'failed' for r in results)} failed")
    return results


def compare(experiment: str | Path, overrides: Iterable[str] = (), out: str | Path | None = None,
            workers: int | None = 1, executor: str = "local", report: bool = True, *,
            plugins: Iterable[str] = (), pm: PluginManager | None = None,
            echo: Echo = _quiet) -> Path:
    """Run an experiment's grid (resumable: finished runs are skipped) and, with ``report``,
    write its report; returns the experiment directory ``OUT/<name>``.

    ``overrides`` (``KEY=VALUE``) apply to every run and are validated with it before
    anything runs.
    """
    pm = pm or make_plugin_manager(list(plugins))
    exp, planned = load_experiment(experiment, pm.registry.algorithms, list(overrides))
    exp_dir = Path(out or DEFAULT_OUT) / exp.name
    echo(f"{exp.name}: {len(planned)} runs ({len({p.label for p in planned})} algorithms × "
         f"{len(exp.seeds)} seeds) → {exp_dir}")
    run_planned(planned, exp_dir, pm=pm, plugin_files=plugins, workers=workers,
                executor=executor, echo=echo)
    if report:
        write(exp_dir, pm=pm)
    return exp_dir


def write(directory: str | Path, *, pm: PluginManager | None = None
          ) -> tuple[Summary, dict[str, Path]]:
    """Summarise ``directory``'s logs and write its report; the summary and the paths."""
    pm = pm or make_plugin_manager()
    summary = summarize(load_logs(directory), catalog=metric_catalog(pm))
    return summary, write_comparison(summary)


def headline_markdown(summary: Summary) -> str:
    """The first ranked metric's table as Markdown (for a console or a wandb report)."""
    table = next((t for t in summary.tables.values() if t.ranked and t.rows), None)
    if table is None:
        return ""
    return render_markdown(metric_section(table), summary.experiment.path).strip()


def report(directory: str | Path, wandb: bool = False, *, pm: PluginManager | None = None,
           entity: str | None = None) -> Summary:
    """Write ``directory``'s ``report.md``/``report.html`` from its JSONL logs and return the
    :class:`~rlkit.compare.summary.Summary` (per-algorithm statistics, for a notebook).

    With ``wandb``, also publish a wandb report (needs an online login; offline, an
    :class:`~rlkit.errors.RlkitError` says how to sync first).
    """
    summary, _ = write(directory, pm=pm)
    if wandb:
        publish_wandb(summary, entity)
    return summary


def publish_wandb(summary: Summary, entity: str | None = None) -> str:
    """Publish the wandb report of ``summary``'s experiment; returns its URL."""
    from rlkit.compare.wandb_report import publish

    exp = summary.experiment
    configs = sorted(exp.path.glob("*/config.yaml"))
    tracking = (yaml.safe_load(configs[0].read_text()) or {}).get("tracking", {}) if configs else {}
    project = tracking.get("project", "rlkit")
    group = tracking.get("group") or exp.name
    return publish(exp.path, project, group, entity, headline_markdown(summary))


def tune(experiment: str | Path, overrides: Iterable[str] = (), out: str | Path | None = None,
         workers: int | None = 1, executor: str = "local", *, plugins: Iterable[str] = (),
         pm: PluginManager | None = None, echo: Echo = _quiet) -> Path:
    """Tune each algorithm of ``experiment`` (its ``tune:`` section), confirm the chosen
    values on fresh seeds and write the tuning report; returns ``OUT/<name>``
    (see :func:`rlkit.compare.tune.tune`)."""
    from rlkit.compare.tune import tune as _tune

    pm = pm or make_plugin_manager(list(plugins))
    result = _tune(experiment, list(overrides), Path(out or DEFAULT_OUT), pm=pm,
                   plugin_files=list(plugins), workers=workers, executor=executor, echo=echo)
    return result.directory


__all__ = ["compare", "headline_markdown", "metric_catalog", "prepare_tasks", "publish_wandb",
           "report", "run_planned", "tune", "write"]
