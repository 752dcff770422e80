"""Bad input ends in one paragraph that names the problem — never a traceback."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner
from conftest import tiny_config

from rlkit.cli import cli_for_tests
from rlkit.config import load_config
from rlkit.errors import ConfigError


def run_cli(tmp_path, config: dict | None = None, text: str | None = None, *extra: str,
            plugin_files=()):
    path = tmp_path / "run.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(config, sort_keys=False))
    result = CliRunner().invoke(cli_for_tests(plugin_files),
                                ["run", str(path), "--out", str(tmp_path / "runs"), *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def test_unknown_algorithm_lists_the_known_ones(tmp_path):
    result = run_cli(tmp_path, tiny_config(**{"algorithm": {"name": "reinforec"}}))
    assert result.exit_code == 2
    assert "Unknown algorithm 'reinforec'" in result.output
    assert "Did you mean 'reinforce'?" in result.output
    assert "Known algorithms:" in result.output and "reinforce" in result.output


def test_misspelt_key_gets_did_you_mean_with_file_and_line(tmp_path):
    text = "name: x\nseed: 0\nrollout:\n  batch_size: 4\n  max_new_tokns: 8\n"
    result = run_cli(tmp_path, text=text)
    assert result.exit_code == 2
    assert "run.yaml line 5" in result.output
    assert "unknown key 'rollout.max_new_tokns'" in result.output
    assert "Did you mean 'max_new_tokens'?" in result.output


def test_misspelt_algorithm_key_is_checked_against_the_plugin_config(tmp_path):
    config = tiny_config(**{"algorithm": {"name": "reinforce", "baselin": "none"}})
    result = run_cli(tmp_path, config)
    assert result.exit_code == 2
    assert "unknown key 'algorithm.baselin'" in result.output
    assert "Did you mean 'baseline'?" in result.output


def test_wrong_type_names_key_value_and_expected_type(tmp_path):
    result = run_cli(tmp_path, tiny_config(**{"train.steps": "many"}))
    assert result.exit_code == 2
    assert "key 'train.steps' = 'many'" in result.output and "expected int" in result.output
    result = run_cli(tmp_path, tiny_config(), None, "--set", "algorithm.lr=fast")
    assert result.exit_code == 2
    assert "key 'algorithm.lr' = 'fast'" in result.output and "expected float" in result.output
    result = run_cli(tmp_path, tiny_config(**{"algorithm.baseline": "mean"}))
    assert "expected one of 'none', 'moving_average', 'leave_one_out'" in result.output


def test_missing_prompt_file(tmp_path):
    config = tiny_config(**{"prompts.train": str(tmp_path / "nope.jsonl")})
    result = run_cli(tmp_path, config)
    assert result.exit_code == 2
    assert "Prompt file" in result.output and "nope.jsonl' does not exist" in result.output


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "the movie"}\n{"prompt": "the plot"\n')
    result = run_cli(tmp_path, tiny_config(**{"prompts.train": str(prompts)}))
    assert result.exit_code == 2
    assert "prompts.jsonl line 2: not valid JSON" in result.output


def test_missing_key_in_jsonl_names_the_line(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "the movie"}\n{"text": "the plot"}\n')
    result = run_cli(tmp_path, tiny_config(**{"prompts.train": str(prompts)}))
    assert result.exit_code == 2
    assert "line 2: missing key 'prompt'" in result.output


def test_empty_prompt_set(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": ""}\n')
    result = run_cli(tmp_path, tiny_config(**{"prompts.train": str(prompts)}))
    assert result.exit_code == 2
    assert "prompt set is empty" in result.output


def test_prompts_from_a_csv_file(tmp_path):
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt,id\nthe movie,1\nthe plot was,2\na film,3\nit is,4\n")
    result = run_cli(tmp_path, tiny_config(**{"prompts.train": str(prompts)}))
    assert result.exit_code == 0, result.output
    samples = [json.loads(line) for line in
               (tmp_path / "runs" / "tiny" / "samples.jsonl").read_text().splitlines()]
    assert {s["prompt"] for s in samples} <= {"the movie", "the plot was", "a film", "it is"}
    result = run_cli(tmp_path, tiny_config(**{"prompts.train": str(prompts), "task": {},
                                              "name": "notask"}))
    assert result.exit_code == 2  # no task: a from-config policy has no tokenizer
    assert "no tokenizer is known" in result.output


def test_plugin_that_raises_on_import_does_not_stop_the_run(tmp_path):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("import not_a_real_module_xyz\n")
    result = run_cli(tmp_path, tiny_config(), None, plugin_files=[bad])
    assert result.exit_code == 0, result.output
    assert "bad_plugin.py' failed to load: ModuleNotFoundError" in result.output


def test_existing_run_is_never_overwritten(tmp_path):
    assert run_cli(tmp_path, tiny_config()).exit_code == 0
    result = run_cli(tmp_path, tiny_config())
    assert result.exit_code == 2 and "already holds a run" in result.output
    assert json.loads((tmp_path / "runs" / "tiny" / "status.json").read_text())["state"] == "finished"


def test_invalid_yaml_names_the_line(tmp_path):
    result = run_cli(tmp_path, text="name: x\nrollout: [1, 2\n")
    assert result.exit_code == 2 and "not valid YAML" in result.output


def test_overrides_and_the_saved_config(tmp_path):
    config = load_config(data=tiny_config(), overrides=["algorithm.lr=1e-5", "rollout.top_k=5"])
    assert config.algorithm["lr"] == 1e-5 and config.rollout.top_k == 5
    assert config.algorithm["baseline_decay"] == 0.9  # completed with the plugin's defaults
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(data=tiny_config(), overrides=["algorithm.lr"])
    assert run_cli(tmp_path, tiny_config(), None, "--set", "algorithm.lr=0.002").exit_code == 0
    saved = yaml.safe_load((tmp_path / "runs" / "tiny" / "config.yaml").read_text())
    assert saved["algorithm"]["lr"] == 0.002 and saved["algorithm"]["name"] == "reinforce"
