"""The report: rendered from JSONL logs alone, every algorithm and every figure in the HTML."""

from __future__ import annotations

import json
import math

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


# --------------------------------------------------------------------------- honest statistics


def write_run(root, name, rows, *, algo, seed, config_extra=None, state="finished"):
    run = root / name
    run.mkdir(parents=True)
    config = {"name": name, "seed": seed, "algorithm": {"name": algo}, "task": {"name": "toy"},
              **(config_extra or {})}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "status.json").write_text(json.dumps({"state": state, "wall_s": 5.0}))


def curve_rows(offset, seed, extra=None, steps=10):
    rng = np.random.default_rng(seed)
    rows = []
    for step in range(steps + 1):
        row = {"train/step": step, "train/samples": 16 * step, "train/wall_s": 0.5 * step}
        if step % 5 == 0:
            progress = step / steps
            row |= {"eval/reward": offset * progress + 0.1 * rng.normal(),
                    "eval/kl": (1 + offset) * progress}
            row |= (extra(step) if extra else {})
        rows.append(row)
    return rows


def test_a_three_seed_report_never_claims_a_95_percent_interval(tmp_path):
    exp = fake_experiment(tmp_path / "fake")
    paths = write_report(exp, n_resamples=200)
    for kind in ("markdown", "html"):
        text = paths[kind].read_text()
        assert "95%" not in text and "95 %" not in text
    markdown = paths["markdown"].read_text()
    assert "Final mean [range over 3 seeds]" in markdown  # named for what it is
    assert "AUC mean [range over 3 seeds]" in markdown
    assert "seeds per arm for 80% power" in markdown
    assert "Best (in-sample)" in markdown and "biased upward" in markdown
    from rlkit.compare.plots import band_caption

    for short in (False, True):  # the figures' titles use these words too
        assert "95" not in band_caption({"range"}, short=short)


def test_five_seeds_get_iqm_with_a_bootstrap_interval(tmp_path):
    root = tmp_path / "five"
    for algo, offset in (("alpha", 1.0), ("beta", 0.0)):
        for seed in range(5):
            write_run(root, f"{algo}__toy__s{seed}", curve_rows(offset, seed), algo=algo,
                      seed=seed)
    markdown = write_report(root, n_resamples=200)["markdown"].read_text()
    assert "Final IQM [95% CI]" in markdown and "P(A > B) [95% CI]" in markdown
    assert "range over" not in markdown and "95% bootstrap CI of the mean" in markdown


def test_best_is_chosen_on_the_selection_split(tmp_path):
    from rlkit.compare.logs import load_experiment
    from rlkit.compare.summary import summarize

    root = tmp_path / "sel"
    # the selection split peaks at step 5; the reported eval metric peaks at step 10
    select = {0: 0.0, 5: 0.9, 10: 0.1}
    report = {0: 0.0, 5: 0.4, 10: 0.8}
    for seed in range(3):
        rows = curve_rows(0.0, seed, lambda s, i=seed: {"eval/select/reward": select[s],
                                                         "eval/reward": report[s] + i})
        write_run(root, f"alpha__toy__s{seed}", rows, algo="alpha", seed=seed)
    summary = summarize(load_experiment(root), n_resamples=100)
    row = summary.tables["eval/reward"].rows[0]
    assert row.best_source == "selection split"
    assert row.best.spread.mean == pytest.approx(0.4 + 1.0)  # the value at step 5, not 0.8
    assert row.final.spread.mean == pytest.approx(0.8 + 1.0)
    # AUC: (5·(0+0.4)/2 + 5·(0.4+0.8)/2) / 10 = 0.4, plus the seed offset
    assert row.auc.spread.mean == pytest.approx(0.4 + 1.0)
    markdown = write_report(root, n_resamples=100)["markdown"].read_text()
    assert "Best (selection split)" in markdown and "eval/select/reward" in markdown


def test_cost_table_and_learning_curves_in_every_budget_the_logs_carry(tmp_path):
    root = tmp_path / "cost"
    for seed in range(2):
        rows = curve_rows(1.0, seed)
        for r in rows:
            step = r["train/step"]
            r |= {"train/optimizer_steps": 4 * step, "train/tokens": 100 * step,
                  "train/flops": 1e9 * step, "perf/peak_memory_mb": 300.0 + step}
        write_run(root, f"alpha__toy__s{seed}", rows, algo="alpha", seed=seed)
    paths = write_report(root, n_resamples=100)
    markdown = paths["markdown"].read_text()
    cost = markdown.split("## Cost")[1].split("##")[0]
    for header in ("training samples", "optimizer steps", "training tokens", "estimated FLOPs",
                   "wall time", "Peak memory"):
        assert header in cost
    assert "| alpha | 2 | 160 | 40 | 1000 | 1e+10 | 5 ± 0 | 310 |" in cost  # final rows, peak
    for axis in ("samples", "optimizer_steps", "tokens", "flops", "wall"):
        assert f"figure:curve_eval_reward_vs_{axis}" in paths
    assert "figure:curve_eval_kl_vs_tokens" not in paths  # KL: samples and wall only
    # a log without FLOPs gets no FLOPs axis
    bare = tmp_path / "bare"
    write_run(bare, "alpha__toy__s0", curve_rows(1.0, 0), algo="alpha", seed=0)
    assert "figure:curve_eval_reward_vs_flops" not in write_report(bare, n_resamples=50)


def test_evaluation_noise_is_reported_apart_from_training_noise(tmp_path):
    from rlkit.compare.logs import load_experiment
    from rlkit.compare.summary import summarize

    root = tmp_path / "noise"
    finals, eval_stds = [1.0, 2.0, 3.0], [0.4, 0.4, 0.4]
    for seed in range(3):
        rows = curve_rows(0.0, seed, lambda s, i=seed: {
            "eval/reward": finals[i] if s == 10 else 0.0, "eval/reward/eval_std": eval_stds[i]})
        write_run(root, f"alpha__toy__s{seed}", rows, algo="alpha", seed=seed,
                  config_extra={"eval": {"seeds": [1, 2, 3, 4]}})
    (noise,) = summarize(load_experiment(root), n_resamples=50).noise
    assert noise.metric == "eval/reward" and noise.eval_seeds == 4
    assert noise.between_seed_std == pytest.approx(1.0)  # std of 1, 2, 3
    assert noise.within_run_eval_std == pytest.approx(0.4)
    assert noise.eval_se == pytest.approx(0.2)  # 0.4 / √4
    assert noise.training_std == pytest.approx(math.sqrt(1.0 - 0.04))
    markdown = write_report(root, n_resamples=50)["markdown"].read_text()
    assert "## Training noise and evaluation noise" in markdown


def test_a_plugin_metric_with_a_goal_is_ranked(tmp_path):
    from rlkit.compare.api import report

    plugin = tmp_path / "pass_rate_plugin.py"
    plugin.write_text(
        "from rlkit.api import MetricInfo, hookimpl\n\n"
        "@hookimpl\n"
        "def rlkit_register_metrics(register):\n"
        "    register(MetricInfo('eval/pass_rate', 'Pass rate', 'fraction', 'max', eval=True))\n")
    root = tmp_path / "plugin"
    for algo, rate in (("low", 0.2), ("high", 0.7)):
        for seed in range(3):
            rows = curve_rows(0.0, seed, lambda s, r=rate: {"eval/pass_rate": r * s / 10})
            write_run(root, f"{algo}__toy__s{seed}", rows, algo=algo, seed=seed)
    from rlkit.plugins import make_plugin_manager

    summary = report(root, pm=make_plugin_manager([plugin]))
    table = summary.tables["eval/pass_rate"]
    assert table.ranked and [r.label for r in table.rows] == ["high", "low"]
    assert "eval/pass_rate" in summary.pairwise
    assert "### Pass rate [fraction] (higher is better" in (root / "report.md").read_text()


def test_every_block_renders_in_both_renderers(tmp_path):
    from rlkit.compare import render

    png = tmp_path / "f.png"
    png.write_bytes(b"\x89PNG fake")
    blocks = [render.Heading(2, "H"), render.Paragraph("p < q"), render.warning("w"),
              render.List(["a", "b"]), render.Table(["x", "y"], [["1", "a|b"]], "cap"),
              render.Figure("f", png, "caption")]
    md = render.render_markdown(blocks, tmp_path)
    assert "## H" in md and "> **Warning:** w" in md and "- a" in md and "a\\|b" in md
    assert "![f](f.png)" in md and "*cap*" in md
    html = render.render_html(blocks, "t")
    assert "p &lt; q" in html and 'class="warn"' in html and "<li>a</li>" in html
    assert "data:image/png;base64," in html
    with pytest.raises(ValueError, match="cells"):
        render.Table(["x"], [["1", "2"]])
    with pytest.raises(TypeError):
        render.markdown_block("not a block", tmp_path)  # type: ignore[arg-type]
