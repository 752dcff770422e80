"""``rlkit tune``: tune each algorithm with the same budget, then confirm on fresh seeds."""

from __future__ import annotations

import click

from rlkit.compare.cli_compare import grid_options, plugin_files


@click.command("tune")
@grid_options
@click.pass_context
def tune_command(ctx: click.Context, experiment: str, out: str, executor: str,
                 workers: int | None, overrides: tuple[str, ...]) -> None:
    """Tune every algorithm of EXPERIMENT (its `tune:` section), then confirm.

    Each algorithm searches its own space with the same number of trials on the same tuning
    seeds; the best values are written to OUT/<name>/tuned.yaml and rerun on the experiment's
    fresh `seeds`; OUT/<name>/report.md says how it was tuned and shows the sensitivity and
    the confirmed comparison. Rerun after an interruption to resume.
    """
    from pathlib import Path

    from rlkit.compare.tune import tune
    from rlkit.plugins import get_plugin_manager

    result = tune(experiment, list(overrides), Path(out), pm=get_plugin_manager(),
                  plugin_files=plugin_files(ctx), workers=workers, executor=executor,
                  echo=click.echo)
    for label, trial in result.chosen.items():
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in trial.params.items())
        click.echo(f"{label}: {values} (trial #{trial.number}, objective {trial.value:.4g})")
    click.echo(f"tuned: {result.tuned_path}")
    for kind, path in result.report.items():
        if not kind.startswith("figure:"):
            click.echo(f"{kind}: {path}")
