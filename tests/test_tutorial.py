"""The CISPO tutorial's code runs as written: it loads as a plugin, conforms, and compares."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from click.testing import CliRunner

from rlkit.cli import cli_for_tests
from rlkit.plugins import (
    get_plugin_manager,
    load_plugin_file,
    make_plugin_manager,
    set_plugin_manager,
)
from rlkit.testing import CHECKS

DOC = Path(__file__).resolve().parent.parent / "docs" / "writing-plugins.md"


def tutorial_code() -> str:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)[0]


def test_the_tutorial_plugin_is_under_100_lines_conforms_and_compares(tmp_path):
    code = tutorial_code()
    assert len(code.strip().splitlines()) < 100
    plugin = tmp_path / "rlkit_cispo.py"
    plugin.write_text(code)

    pm = make_plugin_manager()
    load_plugin_file(pm, plugin)
    assert not pm.load_errors, pm.load_errors
    set_plugin_manager(pm)
    for check in CHECKS:
        check("cispo")

    opponent = "grpo"
    assert get_plugin_manager().algorithm("cispo").spec(
        get_plugin_manager().algorithm("cispo").Config()).needs_reference is False
    experiment = tmp_path / "cispo_vs_grpo.yaml"
    experiment.write_text(yaml.safe_dump({
        "name": "cispo_vs_grpo", "seeds": [0], "budget": {"samples": 64}, "task": {"name": "toy"},
        "shared": {"policy": {"config": {"n_layer": 1, "n_head": 2, "n_embd": 16,
                                          "n_positions": 32}},
                   "reward": {"model": "count_good"}, "algorithm": {"lr": 3e-3},
                   "rollout": {"batch_size": 4, "max_new_tokens": 6},
                   "eval": {"every": 2, "num_prompts": 8}, "tracking": {"trackers": ["jsonl"]}},
        "algorithms": ["cispo", opponent],
    }))
    result = CliRunner().invoke(cli_for_tests([plugin]), [
        "--plugin", str(plugin), "compare", str(experiment), "--out", str(tmp_path / "runs"),
        "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output
    html = (tmp_path / "runs" / "cispo_vs_grpo" / "report.html").read_text()
    assert "cispo" in html and opponent in html
