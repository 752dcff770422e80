"""``rlkit report``: the comparison report of an experiment directory, from its JSONL logs."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("exp_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--wandb", "to_wandb", is_flag=True,
              help="Also publish a wandb report (needs wandb-workspaces and an online login; "
                   "offline, it says how to sync the runs first).")
@click.option("--entity", default=None, help="wandb entity for --wandb (default: yours).")
def report_command(exp_dir: str, to_wandb: bool, entity: str | None) -> None:
    """Write EXP_DIR/report.md and report.html (figures embedded) from the runs' JSONL logs."""
    from rlkit.compare.api import headline_markdown, publish_wandb, write
    from rlkit.plugins import get_plugin_manager

    summary, paths = write(Path(exp_dir), pm=get_plugin_manager())
    for kind, path in paths.items():
        if not kind.startswith("figure:"):
            click.echo(f"{kind}: {path}")
    click.echo(f"figures: {sum(k.startswith('figure:') for k in paths)} in "
               f"{Path(exp_dir) / 'figures'}")
    table = headline_markdown(summary)
    if table:
        click.echo("\n" + table)
    if to_wandb:
        click.echo(f"wandb report: {publish_wandb(summary, entity)}")
