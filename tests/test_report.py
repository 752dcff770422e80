"""The report: rendered from JSONL logs alone, every algorithm and every figure in the HTML."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from rlkit.cli import cli_for_tests
from rlkit.compare.report import write_report

ALGORITHMS = {"alpha": 1.0, "beta": 0.5, "gamma": 0.0}  # final reward offsets


def fake_experiment(root, truncated: bool = True):
    rng = np.random.default_rng(0)
    for algo, offset in ALGORITHMS.items():
        for seed in range(3):
            run = root / f"{algo}__toy__s{seed}"
            run.mkdir(parents=True)
            (run / "config.yaml").write_text(yaml.safe_dump({
                "name": run.name, "seed": seed, "algorithm": {"name": algo},
                "task": {"name": "toy"}, "tracking": {"project": "rlkit", "group": "fake"}}))
            lines = []
            for step in range(0, 11):
                row = {"train/step": step, "train/samples": 16 * step, "train/wall_s": 0.5 * step,
                       "perf/samples_per_s": 32.0, "perf/peak_memory_mb": 400.0}
                if step % 5 == 0:
                    progress = step / 10
                    row |= {"eval/reward": offset * progress + 0.1 * rng.normal(),
                            "eval/gold_reward": 0.5 * offset * progress + 0.05 * rng.normal(),
                            "eval/kl": (1 + offset) * progress, "eval/response_length": 8.0}
                lines.append(json.dumps(row))
            text = "\n".join(lines) + "\n"
            if truncated and seed == 2:
                text += '{"train/step": 11, "train/sampl'  # a run killed while writing
            (run / "metrics.jsonl").write_text(text)
            (run / "status.json").write_text(json.dumps({"state": "finished", "wall_s": 5.0}))
    failed = root / "delta__toy__s0"
    failed.mkdir()
    (failed / "config.yaml").write_text(yaml.safe_dump({
        "name": failed.name, "seed": 0, "algorithm": {"name": "delta"}, "task": {"name": "toy"}}))
    (failed / "status.json").write_text(json.dumps(
        {"state": "failed", "error": "DataError: prompts.jsonl line 3: not valid JSON"}))
    return root


def test_report_holds_every_algorithm_and_every_figure(tmp_path):
    exp = fake_experiment(tmp_path / "fake")
    paths = write_report(exp)
    figures = [p for k, p in paths.items() if k.startswith("figure:")]
    assert len(figures) >= 6 and all(p.exists() and p.stat().st_size > 1000 for p in figures)
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == len(figures)  # self-contained
    assert "<img src=\"figures" not in html
    for label in ALGORITHMS:
        assert label in html
    markdown = paths["markdown"].read_text()
    assert "delta__toy__s0" in markdown and "not valid JSON" in markdown  # the failed run
    assert "3 vs 3 seeds" in markdown  # the few-seeds warning
    ranking = markdown.split("### Eval reward")[1].split("###")[0]
    assert ranking.index("alpha") < ranking.index("beta") < ranking.index("gamma")
    for figure in figures:
        assert f"figures/{figure.name}" in markdown


def test_report_command_and_wandb_report_offline(tmp_path, monkeypatch):
    exp = fake_experiment(tmp_path / "fake")
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = CliRunner().invoke(cli_for_tests(), ["report", str(exp), "--wandb"])
    assert result.exit_code == 2, result.output  # offline: says what to do, no traceback
    assert "report.html" in result.output and "| 1 | alpha |" in result.output
    assert f"wandb sync {exp}/*/wandb/offline-run-*" in result.output
    assert "Traceback" not in result.output

    pytest.importorskip("wandb_workspaces")
    from rlkit.compare.wandb_report import build_report

    report = build_report(None, "rlkit", "fake", "| table |")
    assert report.title == "rlkit: fake"
    kinds = [type(b).__name__ for b in report.blocks]
    assert kinds.count("PanelGrid") == 2 and "MarkdownBlock" in kinds
    panels = [p for b in report.blocks if type(b).__name__ == "PanelGrid" for p in b.panels]
    assert {type(p).__name__ for p in panels} == {"LinePlot", "ScatterPlot"}
    assert any(getattr(p, "y", None) == ["eval/reward"] for p in panels)


def test_report_of_an_empty_directory_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli_for_tests(), ["report", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_logs_skip_only_a_truncated_last_line(tmp_path):
    from rlkit.compare.logs import load_experiment
    from rlkit.errors import RlkitError

    exp = load_experiment(fake_experiment(tmp_path / "fake"))
    truncated = [r for r in exp.runs if r.skipped_lines]
    assert len(truncated) == 3 and all(len(r.rows) == 11 for r in truncated)
    assert [r.name for r in exp.failed] == ["delta__toy__s0"]
    assert exp.score_matrix("alpha", "eval/reward").shape == (3, 1)

    bad = tmp_path / "fake" / "alpha__toy__s0" / "metrics.jsonl"
    lines = bad.read_text().splitlines()
    bad.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(RlkitError, match=r"metrics.jsonl:2"):
        load_experiment(tmp_path / "fake")
    with pytest.raises(RlkitError, match="No runs found"):
        load_experiment(tmp_path)


def test_wandb_report_groups_by_label_and_shows_a_runs_table():
    pytest.importorskip("wandb_workspaces")
    from rlkit.compare.wandb_report import build_report

    report = build_report(None, "rlkit", "fake")
    grid = next(b for b in report.blocks if type(b).__name__ == "PanelGrid")
    assert grid.runsets[0].groupby == ["config.label"]  # a β sweep stays several arms
    assert "summary:eval/reward" in grid.runsets[0].visible_columns
