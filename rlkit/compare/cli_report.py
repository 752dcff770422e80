"""``rlkit report``: the comparison report of an experiment directory, from its JSONL logs."""

from __future__ import annotations

import re
from pathlib import Path

import click
import yaml


def _main_table(markdown: str) -> str:
    """The eval-reward section of report.md (what the console shows)."""
    match = re.search(r"### Eval reward.*?(?=\n### |\n## )", markdown, flags=re.S)
    return match.group(0).strip() if match else ""


@click.command("report")
@click.argument("exp_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--wandb", "to_wandb", is_flag=True,
              help="Also publish a wandb report (needs wandb-workspaces and an online login; "
                   "offline, it says how to sync the runs first).")
@click.option("--entity", default=None, help="wandb entity for --wandb (default: yours).")
def report_command(exp_dir: str, to_wandb: bool, entity: str | None) -> None:
    """Write EXP_DIR/report.md and report.html (figures embedded) from the runs' JSONL logs."""
    from rlkit.compare.report import write_report

    paths = write_report(Path(exp_dir))
    for kind, path in paths.items():
        if not kind.startswith("figure:"):
            click.echo(f"{kind}: {path}")
    click.echo(f"figures: {sum(k.startswith('figure:') for k in paths)} in "
               f"{Path(exp_dir) / 'figures'}")
    markdown = paths["markdown"].read_text(encoding="utf-8")
    table = _main_table(markdown)
    if table:
        click.echo("\n" + table)
    if to_wandb:
        from rlkit.compare.wandb_report import publish

        configs = sorted(Path(exp_dir).glob("*/config.yaml"))
        tracking = yaml.safe_load(configs[0].read_text()).get("tracking", {}) if configs else {}
        project = tracking.get("project", "rlkit")
        group = tracking.get("group") or Path(exp_dir).name
        url = publish(Path(exp_dir), project, group, entity, table)
        click.echo(f"wandb report: {url}")
