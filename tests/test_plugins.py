"""The plugin system: entry points, local files, the registration API, errors, listing."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner
from conftest import make_run, read_rows, tiny_config

import rlkit
from rlkit.algorithm import Algorithm, AlgorithmConfig
from rlkit.cli import cli_for_tests
from rlkit.errors import PluginError
from rlkit.plugins import get_plugin_manager, make_plugin_manager

THROWAWAY = '''
from dataclasses import dataclass
import rlkit
from rlkit.algorithm import Algorithm, AlgorithmConfig, doc


@dataclass
class SignConfig(AlgorithmConfig):
    scale: float = doc(1.0, "Multiplier of the sequence log-prob.")


class Sign(Algorithm):
    """Push up log-probs of responses with a positive score (a throwaway test algorithm)."""
    name = "{name}"
    Config = SignConfig

    def loss(self, batch, out):
        sign = (batch.scores > 0).float() * 2 - 1
        loss = -(self.config.scale * sign * (out.logprobs * batch.response_mask).sum(1)).mean()
        return loss, {{"loss/policy": loss.detach()}}


@rlkit.hookimpl
def rlkit_register_algorithms(register):
    register(Sign)
'''


def test_plugins_json_lists_reinforce_from_its_entry_point():
    result = CliRunner().invoke(cli_for_tests(), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    by_name = {row["name"]: row for row in rows}
    assert "reinforce" in by_name["reinforce"]["algorithms"]
    assert by_name["reinforce"]["version"] == rlkit.__version__  # the rlkit distribution's
    assert "rlkit_register_algorithms" in by_name["reinforce"]["hooks"]
    for row in rows:
        assert {"name", "version", "hooks", "algorithms", "tasks", "rewards"} <= row.keys()
    assert "toy" in by_name["rlkit.tasks.toy"]["tasks"]
    assert "count_good" in by_name["rlkit.rewards"]["rewards"]


def test_throwaway_algorithm_from_a_plugin_file_runs(tmp_path):
    plugin = tmp_path / "sign_plugin.py"
    plugin.write_text(THROWAWAY.format(name="sign"))
    config = tmp_path / "run.yaml"
    import yaml

    config.write_text(yaml.safe_dump(tiny_config(**{"algorithm": {"name": "sign", "lr": 1e-3}})))
    cli = cli_for_tests([plugin])
    listing = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).output)
    assert any("sign" in row["algorithms"] for row in listing)
    result = CliRunner().invoke(cli, ["run", str(config), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "runs" / "tiny" / "metrics.jsonl")
    assert rows[-1]["train/step"] == 3 and "loss/policy" in rows[-1]


def test_throwaway_algorithm_through_the_registration_api(tmp_path):
    class Greedy(Algorithm):
        name = "api_algo"
        Config = AlgorithmConfig

        def loss(self, batch, out):
            loss = -(batch.scores.unsqueeze(1) * out.logprobs * batch.response_mask).mean()
            return loss, {}

    class Plugin:
        @rlkit.hookimpl
        def rlkit_register_algorithms(self, register):
            register(Greedy)

    pm = get_plugin_manager()
    pm.register(Plugin(), name="api-plugin")
    try:
        run = make_run(tmp_path, tiny_config(**{"algorithm": {"name": "api_algo"}}))
        run.train()
        assert read_rows(run.run_dir / "metrics.jsonl")[-1]["train/step"] == 3
        assert pm.registry.owner[("algorithm", "api_algo")] == "api-plugin"
    finally:
        pm.unregister(name="api-plugin")
    assert "api_algo" not in pm.registry.algorithms


def test_two_algorithms_with_one_name_is_an_error_naming_both_plugins(tmp_path):
    plugin = tmp_path / "dup.py"
    plugin.write_text(THROWAWAY.format(name="reinforce"))
    pm = make_plugin_manager([plugin])
    with pytest.raises(PluginError) as info:
        pm.registry  # noqa: B018
    assert "'reinforce'" in str(info.value) and str(plugin) in str(info.value)


def test_a_plugin_that_raises_on_import_is_named_and_the_others_load(tmp_path):
    bad = tmp_path / "broken_plugin.py"
    bad.write_text("raise RuntimeError('boom: missing dependency')\n")
    cli = cli_for_tests([bad])
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0
    assert "broken_plugin.py" in result.output and "boom: missing dependency" in result.output
    assert "reinforce" in result.output
    assert "Traceback" not in result.output


def test_a_misspelt_hook_is_rejected_by_name(tmp_path):
    plugin = tmp_path / "typo.py"
    plugin.write_text(textwrap.dedent("""
        import rlkit
        @rlkit.hookimpl
        def rlkit_register_algorithm(register):  # missing 's'
            pass
    """))
    pm = make_plugin_manager([plugin])
    assert any(name == str(plugin) and "rlkit_register_algorithm" in err
               for name, err in pm.load_errors)
    assert not pm.has_plugin(str(plugin))


def test_env_switches_restrict_entry_points(monkeypatch):
    monkeypatch.setenv("RLKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "reinforce" not in make_plugin_manager().registry.algorithms
    monkeypatch.delenv("RLKIT_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("RLKIT_LOAD_PLUGINS", "reinforce")
    assert set(make_plugin_manager().registry.algorithms) == {"reinforce"}
    monkeypatch.setenv("RLKIT_LOAD_PLUGINS", "nothing-by-this-name")
    assert make_plugin_manager().registry.algorithms == {}


def test_lifecycle_hooks_fire_and_after_update_metrics_land_in_the_log(tmp_path):
    calls = []

    class Observer:
        @rlkit.hookimpl
        def rlkit_run_start(self, ctx):
            assert isinstance(ctx, rlkit.RunContext) and ctx.step == 0
            calls.append("start")

        @rlkit.hookimpl
        def rlkit_after_update(self, ctx, step, metrics):
            assert ctx.step == step  # the context follows the run
            calls.append(f"update{step}")
            return {"custom/double_reward": 2 * metrics["objective/reward"]}

        @rlkit.hookimpl
        def rlkit_evaluate(self, ctx, step):
            # the evaluation's own samples, aligned with its prompts
            assert ctx.last_eval.step == step
            assert len(ctx.last_eval.responses) == len(ctx.last_eval.prompts) == 8
            return {"eval/custom": float(step)}

        @rlkit.hookimpl
        def rlkit_run_end(self, ctx, summary):
            calls.append("end")

    get_plugin_manager().register(Observer(), name="observer")
    run = make_run(tmp_path)
    run.train()
    assert calls == ["start", "update1", "update2", "update3", "end"]
    rows = read_rows(run.run_dir / "metrics.jsonl")
    assert rows[1]["custom/double_reward"] == 2 * rows[1]["objective/reward"]
    assert [r["eval/custom"] for r in rows if "eval/custom" in r] == [0.0, 2.0, 3.0]
