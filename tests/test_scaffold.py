"""`rlkit new-plugin` writes a package that registers through its entry point, passes the
conformance kit in its own tests, and runs in a comparison beside a built-in algorithm."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml
from click.testing import CliRunner

from rlkit.cli import cli_for_tests
from rlkit.plugins import make_plugin_manager


def _install_entry_point(root, name: str, module: str) -> None:
    """What `pip install -e` leaves behind for importlib.metadata: a dist-info directory with
    the package's entry points, found on sys.path (no network, nothing left in site-packages)."""
    info = root / f"rlkit_{name}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: rlkit-{name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[rlkit]\n{name} = {module}\n")


def test_new_plugin_installs_conforms_and_compares(tmp_path, monkeypatch):
    result = CliRunner().invoke(cli_for_tests(), ["new-plugin", "my_algo", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "rlkit-my-algo"
    assert {p.name for p in root.iterdir()} >= {"pyproject.toml", "rlkit_my_algo.py",
                                                "README.md", "tests"}
    assert 'my_algo = "rlkit_my_algo"' in (root / "pyproject.toml").read_text()

    _install_entry_point(root, "my_algo", "rlkit_my_algo")
    monkeypatch.syspath_prepend(str(root))
    env_path = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", env_path)

    # it shows in the plugin listing, with its distribution's version
    rows = {r["name"]: r for r in make_plugin_manager().describe()}
    assert rows["my_algo"]["algorithms"] == ["my_algo"] and rows["my_algo"]["version"] == "0.1.0"

    # the package's own tests (conformance kit + hand-computed loss) pass
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(root / "tests")], capture_output=True, text=True, cwd=root,
                           timeout=600)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    from rlkit.testing import CHECKS

    assert f"{len(CHECKS) + 1} passed" in tests.stdout  # the kit's checks + the hand-made loss

    # and it runs in a two-algorithm comparison
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(yaml.safe_dump({
        "name": "newplugin", "seeds": [0], "budget": {"samples": 32}, "task": {"name": "toy"},
        "shared": {"policy": {"config": {"n_layer": 1, "n_head": 2, "n_embd": 16,
                                          "n_positions": 32}},
                   "algorithm": {"lr": 3e-3}, "rollout": {"batch_size": 8, "max_new_tokens": 6},
                   "eval": {"every": 2, "num_prompts": 8}, "tracking": {"trackers": ["jsonl"]}},
        "algorithms": ["my_algo", "reinforce"],
    }))
    result = CliRunner().invoke(cli_for_tests(), ["compare", str(experiment), "--out",
                                                  str(tmp_path / "runs"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "2 ran" in result.output and "0 failed" in result.output
    report = (tmp_path / "runs" / "newplugin" / "report.md").read_text()
    assert "my_algo" in report and "reinforce" in report
