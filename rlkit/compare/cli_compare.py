"""``rlkit compare``: run an experiment's grid, then write its report."""

from __future__ import annotations

from typing import Any

import click

OUT_HELP = "Parent directory; the experiment writes OUT/<experiment-name>/."
EXECUTOR_HELP = "local: a process pool on this machine; ray: one Ray task per run (cluster)."
WORKERS_HELP = "Runs at once for the local executor (default: the number of CPU cores)."
SET_HELP = "Override a key of every run, e.g. --set train.device=cuda (repeatable)."


def grid_options(command: Any) -> Any:
    """EXPERIMENT and the options of every command that runs a grid (compare, tune)."""
    for option in reversed((
        click.argument("experiment", type=click.Path(dir_okay=False)),
        click.option("--out", default="runs", show_default=True,
                     type=click.Path(file_okay=False), help=OUT_HELP),
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True, help=EXECUTOR_HELP),
        click.option("--workers", type=int, default=None, help=WORKERS_HELP),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP),
    )):
        command = option(command)
    return command


def plugin_files(ctx: click.Context) -> list[str]:
    """The ``--plugin`` files given to the root command (the workers load them too)."""
    return list(ctx.find_root().params.get("plugin_files") or [])


@click.command("compare")
@grid_options
@click.pass_context
def compare_command(ctx: click.Context, experiment: str, out: str, executor: str,
                    workers: int | None, overrides: tuple[str, ...]) -> None:
    """Run EXPERIMENT (algorithms × seeds × tasks) and write report.md / report.html.

    Finished runs are skipped, so rerunning a killed comparison only runs what is left.
    Exits with status 1 when any run failed (the report is written first and lists them).
    """
    from rlkit.compare.api import compare, write
    from rlkit.plugins import get_plugin_manager

    pm = get_plugin_manager()
    exp_dir = compare(experiment, overrides, out, workers, executor, report=False,
                      plugins=plugin_files(ctx), pm=pm, echo=click.echo)
    summary, paths = write(exp_dir, pm=pm)
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")
    failed = summary.experiment.failed
    if failed:
        names = ", ".join(r.name for r in failed[:5]) + (" ..." if len(failed) > 5 else "")
        click.secho(f"{len(failed)} run(s) failed ({names}): see the report's failed-runs "
                    f"table and each run's status.json; fix the cause and run the same command "
                    f"again (finished runs are kept).", fg="red", err=True)
        ctx.exit(1)
