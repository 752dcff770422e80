"""``rlkit compare``: run an experiment's grid, then write its report."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command("compare")
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Parent directory; the experiment writes OUT/<experiment-name>/.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True,
              help="local: a process pool on this machine; ray: one Ray task per run (cluster).")
@click.option("--workers", type=int, default=None,
              help="Runs at once for the local executor (default: the number of CPU cores).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a key of every run, e.g. --set train.device=cuda (repeatable).")
@click.pass_context
def compare_command(ctx: click.Context, experiment: str, out: str, executor: str,
                    workers: int | None, overrides: tuple[str, ...]) -> None:
    """Run EXPERIMENT (algorithms × seeds × tasks) and write report.md / report.html.

    Finished runs are skipped, so rerunning a killed comparison only runs what is left.
    """
    from rlkit.compare.experiment import load_experiment
    from rlkit.compare.runner import run_grid
    from rlkit.config import apply_overrides
    from rlkit.plugins import get_plugin_manager

    pm = get_plugin_manager()
    exp, planned = load_experiment(experiment, pm.registry.algorithms)
    exp_dir = Path(out) / exp.name
    configs = [apply_overrides(p.config.model_dump(mode="json"), list(overrides))
               for p in planned]
    plugin_files = list(ctx.find_root().params.get("plugin_files") or [])
    start = time.perf_counter()
    # Build each task's cached artifacts once, here, rather than racing in every worker.
    seen = set()
    for p in planned:
        task = p.config.task
        key = (task.name, repr(sorted(task.options.items())))
        if task.name is not None and key not in seen:
            seen.add(key)
            click.echo(f"preparing task '{task.name}' ...")
            pm.task(task.name)(task.options).prepare()
    click.echo(f"{exp.name}: {len(planned)} runs "
               f"({len({p.label for p in planned})} algorithms × {len(exp.seeds)} seeds) → {exp_dir}")
    done = [0]

    def report(result) -> None:
        done[0] += 1
        line = f"  [{done[0]}/{len(planned)}] {result.name}: {result.state}"
        if result.error:
            line += f" — {result.error}"
        click.echo(line)

    results = run_grid(configs, exp_dir, executor=executor, workers=workers,
                       plugin_files=plugin_files, on_result=report)
    failed = [r for r in results if r.state == "failed"]
    click.echo(f"grid done in {time.perf_counter() - start:.0f} s: "
               f"{sum(r.state == 'finished' for r in results)} ran, "
               f"{sum(r.state == 'skipped' for r in results)} already finished, {len(failed)} failed")
    try:
        from rlkit.compare.report import write_report
    except ImportError as exc:  # pragma: no cover - report extras missing
        click.echo(f"report skipped: {exc}", err=True)
        return
    paths = write_report(exp_dir)
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")
