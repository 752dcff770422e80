"""The engine's seams, used as a third-party author uses them.

A test-only external package (tests/ext_plugin/rlkit_ext_demo.py), installed through its entry
point with no edit to rlkit/, brings a generation backend, a reward source reading a metadata
column of the prompt file, and a metric with a direction; a comparison ranks that metric.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import TINY_POLICY, make_run, read_rows, tiny_config

import rlkit
from rlkit.cli import cli_for_tests
from rlkit.errors import PluginError
from rlkit.plugins import get_plugin_manager, make_plugin_manager

EXT = Path(__file__).parent / "ext_plugin"


@pytest.fixture
def ext_installed(tmp_path, monkeypatch):
    """What `pip install` of the demo package leaves for importlib.metadata: a dist-info with
    its entry point on sys.path (no network, nothing written to site-packages)."""
    site = tmp_path / "site"
    info = site / "rlkit_ext_demo-0.3.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rlkit-ext-demo\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text("[rlkit]\next_demo = rlkit_ext_demo\n")
    for path in (site, EXT):
        monkeypatch.syspath_prepend(str(path))
    monkeypatch.setenv("PYTHONPATH", f"{site}:{EXT}")
    return site


def _prompt_file(path: Path) -> Path:
    words = ["good", "great", "bad", "fine"]
    rows = [{"prompt": f"the movie was {w}", "target": words[i % 2]} for i, w in
            enumerate(words * 8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_plugin_listing_shows_every_registry(ext_installed):
    rows = {r["name"]: r for r in make_plugin_manager().describe()}
    demo = rows["ext_demo"]
    assert demo["version"] == "0.3.0"
    assert demo["backends"] == ["hf_generate"]
    assert demo["rewards"] == ["target_word"]
    assert demo["metrics"] == ["eval/target_rate"]
    assert "hf" in rows["rlkit.backends"]["backends"]
    assert set(rows["rlkit.core.datakinds"]["data_kinds"]) == {
        "rollout", "preferences", "unpaired", "judged_pairs"}
    for row in rows.values():
        assert {"backends", "data_kinds", "metrics"} <= set(row)


def test_external_backend_reward_source_and_metadata_in_one_run(ext_installed, tmp_path):
    prompts = _prompt_file(tmp_path / "prompts.jsonl")
    config = tiny_config(**{
        "prompts.train": str(prompts), "rollout.backend": "hf_generate",
        "reward": [{"source": "target_word", "weight": 1.0},
                   {"source": "count_good", "weight": 0.5}],
    })
    run = make_run(tmp_path, config)
    assert type(run.backend).__name__ == "HFGenerateBackend"
    exp, info = run.batch(1)
    # the weighted sum, and each source on its own
    target = info.per_source["target_word"]
    good = info.per_source["count_good"]
    assert torch.allclose(info.raw_scores.cpu(), target + 0.5 * good)
    # the reward source saw each prompt's own `target` column
    expected = [float(m["target"] in r.split()) for m, r in zip(info.metadata, info.responses)]
    assert target.tolist() == expected
    run.train()
    rows = read_rows(run.run_dir / "metrics.jsonl")
    assert {"rewards/target_word/mean", "rewards/count_good/mean"} <= set(rows[1])
    # HF generate and the scoring forward measure the same distribution
    assert rows[1]["rollout/logprob_mismatch"] < 1e-4
    assert "eval/target_rate" in rows[0] and 0.0 <= rows[-1]["eval/target_rate"] <= 1.0


def test_hf_backend_logprob_mismatch_is_float_rounding(tmp_path):
    run = make_run(tmp_path, tiny_config(**{"train.steps": 2}))
    run.train()
    rows = read_rows(run.run_dir / "metrics.jsonl")
    mismatch = [r["rollout/logprob_mismatch"] for r in rows if "rollout/logprob_mismatch" in r]
    assert len(mismatch) == 2 and all(0.0 <= m < 1e-5 for m in mismatch), mismatch


def test_external_metric_is_ranked_in_the_report(ext_installed, tmp_path):
    prompts = _prompt_file(tmp_path / "prompts.jsonl")
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(yaml.safe_dump({
        "name": "ext", "seeds": [0], "budget": {"samples": 32}, "task": {"name": "toy"},
        "shared": {"policy": {"config": dict(TINY_POLICY)}, "prompts": {"train": str(prompts)},
                   "reward": [{"source": "target_word"}], "algorithm": {"lr": 3e-3},
                   "rollout": {"batch_size": 8, "max_new_tokens": 6, "backend": "hf_generate"},
                   "eval": {"every": 2, "num_prompts": 8}, "tracking": {"trackers": ["jsonl"]}},
        "algorithms": ["reinforce", {"name": "a2c"}],
    }))
    result = CliRunner().invoke(cli_for_tests(), ["compare", str(experiment), "--out",
                                                  str(tmp_path / "runs"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "runs" / "ext" / "report.md").read_text()
    title = "Share of eval responses containing the target"
    assert title in report
    section = report[report.index(title):]
    assert "higher is better" in section.splitlines()[0]
    assert "reinforce" in section and "a2c" in section


def test_algorithm_declarations_are_validated_at_registration():
    class Typo(rlkit.Algorithm):
        name = "typo"
        loss_aggregation = "token_means"  # type: ignore[assignment]

        def loss(self, batch, out):
            return out.logprobs.sum(), {}

    class Plugin:
        @rlkit.hookimpl
        def rlkit_register_algorithms(self, register):
            register(Typo)

    pm = get_plugin_manager()
    pm.register(Plugin(), name="typo-plugin")
    with pytest.raises(PluginError, match="typo-plugin.*loss_aggregation='token_means'.*token_mean"):
        _ = pm.registry


def test_reference_free_algorithm_builds_no_reference(tmp_path):
    class NoRef(rlkit.Algorithm):
        name = "noref"
        needs_reference = False
        loss_aggregation = "seq_mean_token_sum"

        def loss(self, batch, out):
            return -(batch.scores * out.logprobs.sum(1)).mean(), {}

    class Plugin:
        @rlkit.hookimpl
        def rlkit_register_algorithms(self, register):
            register(NoRef)

    get_plugin_manager().register(Plugin(), name="noref-plugin")
    # with eval.kl off the engine builds no reference at all
    run = make_run(tmp_path, tiny_config(**{"algorithm": {"name": "noref", "lr": 1e-3},
                                            "eval.kl": False}))
    assert run.reference is None
    exp, _ = run.batch(1)
    assert exp.ref_logprobs is None and float(exp.kl.abs().sum()) == 0.0
    with pytest.raises(rlkit.RlkitError, match="needs_reference = False"):
        run.ctx.reference_logprobs(exp)
    # no reference copy among the run's tensors: only the policy's parameters
    assert sum(p.numel() for p in run.policy.parameters()) == run._params["policy"]
    assert run._params["reference"] == 0
    run.train()
    assert all("eval/kl" not in r for r in read_rows(run.run_dir / "metrics.jsonl"))

    # by default an evaluation-only copy measures eval/kl; training batches still carry none
    run = make_run(tmp_path, tiny_config(**{"algorithm": {"name": "noref", "lr": 3e-3},
                                            "reward.model": "response_length"}), name="evalkl")
    exp, _ = run.batch(1)
    assert run.reference is not None and exp.ref_logprobs is None
    assert float(exp.kl.abs().sum()) == 0.0 and run._params["reference"] == 0
    run.train()
    rows = read_rows(run.run_dir / "metrics.jsonl")
    assert rows[0]["eval/kl"] == 0.0 and rows[-1]["eval/kl"] != 0.0


def test_separate_critic_model_through_the_load_hook(tmp_path):
    """critic.model is loaded with rlkit_load_model(role='critic'): its own optimizer group,
    its own gradient norm, and a trunk that is not the policy's."""
    base = make_run(tmp_path, tiny_config(name="base"))
    critic_dir = tmp_path / "critic"
    base.policy.save_pretrained(critic_dir)
    base.tokenizer.save_pretrained(critic_dir)
    seen = []

    class Spy:
        @rlkit.hookimpl(hookwrapper=False, tryfirst=True)
        def rlkit_load_model(self, spec, role, run_config):
            seen.append(role)

    get_plugin_manager().register(Spy(), name="spy")
    config = tiny_config(**{"algorithm": {"name": "a2c", "lr": 1e-3},
                            "reward.model": "response_length",  # never all zero
                            "critic.model": str(critic_dir), "train.steps": 2})
    run = make_run(tmp_path, config)
    assert "critic" in seen
    assert len(run.optimizer.param_groups) == 2
    policy_ids = {id(p) for p in run.policy.parameters()}
    assert not policy_ids & {id(p) for p in run.critic.parameters()}
    run.train()
    row = read_rows(run.run_dir / "metrics.jsonl")[1]
    assert row["value/grad_norm"] > 0 and row["policy/grad_norm"] > 0
    assert row["value/grad_norm"] != row["policy/grad_norm"]


def test_metric_registry_refuses_to_redeclare_a_canonical_name():
    class Plugin:
        @rlkit.hookimpl
        def rlkit_register_metrics(self, register):
            register(rlkit.MetricInfo("eval/reward", "Something else", goal="min", eval=True))

    pm = get_plugin_manager()
    pm.register(Plugin(), name="clash")
    with pytest.raises(PluginError, match="clash.*canonical metric 'eval/reward'"):
        _ = pm.registry


def test_python_api_runs_a_config(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    summary = rlkit.run(str(config), f"out={tmp_path / 'runs'}", "train.steps=2")
    assert summary["train/step"] == 2 and "eval/reward" in summary


def test_ratio_diagnostics_have_one_definition_on_hand_values():
    from rlkit.ops import ratio_stats

    # ρ = 1.5, 0.5, 1.1 (and 0.9 masked out); A = +1, +1, −1; ε = 0.2 on both sides.
    ratio = torch.tensor([[1.5, 0.5, 1.1, 0.9]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    out = ratio_stats(ratio.log(), torch.zeros(1, 4), mask, adv, (0.2, 0.2))
    assert out["policy/ratio_mean"].item() == pytest.approx((1.5 + 0.5 + 1.1) / 3)
    expected_kl = sum(r - 1 - torch.log(torch.tensor(r)).item() for r in (1.5, 0.5, 1.1)) / 3
    assert out["policy/approx_kl"].item() == pytest.approx(expected_kl, rel=1e-5)
    # only t0 binds (A > 0, ρ > 1.2); t1 has A > 0 and ρ < 0.8, where the clip does not bind
    assert out["policy/clipfrac"].item() == pytest.approx(1 / 3)
    # a sequence-level advantage [N, 1] broadcasts over tokens; no clip range → no clipfrac
    assert "policy/clipfrac" not in ratio_stats(ratio.log(), torch.zeros(1, 4), mask, adv[:, :1])


@pytest.mark.parametrize("algorithm", [
    {"name": "kto"},  # unpaired data with mismatched anchor rows
    {"name": "dpo", "mode": "online", "samples_per_prompt": 3},  # judged pairs: 3 drawn, 2 kept
])
def test_train_samples_counts_what_the_budget_counts(tmp_path, algorithm):
    config = tiny_config(**{"algorithm": {**algorithm, "lr": 1e-3}, "train.samples": 48,
                            "rollout.batch_size": 8, "train.steps": None})
    config["train"].pop("steps")
    run = make_run(tmp_path, config)
    run.train()
    rows = read_rows(run.run_dir / "metrics.jsonl")
    per_step = 8 * (3 if algorithm.get("mode") == "online" else 1)
    assert run.total_steps == -(-48 // per_step)
    assert [r["train/samples"] for r in rows] == [per_step * s for s in range(run.total_steps + 1)]


def test_eval_seeds_samples_per_prompt_and_pass_at_k(ext_installed, tmp_path):
    from rlkit import metrics as M

    prompts = _prompt_file(tmp_path / "prompts.jsonl")
    config = tiny_config(**{"prompts.train": str(prompts), "reward.model": "target_word",
                            "eval.samples_per_prompt": 3, "eval.seeds": [5, 6],
                            "eval.num_prompts": 4, "eval.select_prompts": 2, "train.steps": 1,
                            "prompts.eval_fraction": 0.25})
    run = make_run(tmp_path, config)
    run.train()
    row = read_rows(run.run_dir / "metrics.jsonl")[0]
    # binary rewards and k = 3: pass@3 ≥ mean@3, both means over the two eval seeds
    assert row["eval/pass@3"] >= row["eval/reward"]
    assert "eval/reward/eval_std" in row and row["eval/reward/eval_std"] >= 0
    assert {M.select_key("eval/reward"), M.select_key("eval/kl")} <= set(row)
    assert len(run.ctx.last_eval.responses) == 4 * 3
    info = M.catalogue(logged=row)["eval/pass@3"]
    assert info.goal == "max" and info.eval


def test_the_public_names_resolve_lazily_and_import_rlkit_loads_no_torch() -> None:
    """``import rlkit`` (and so the command line's start) imports neither torch nor
    transformers; every name of ``rlkit.__all__`` still resolves, to the object its defining
    module holds, and an unknown name is an AttributeError."""
    import importlib
    import subprocess
    import sys

    probe = ("import sys, rlkit, rlkit.cli; "
             "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
    assert sorted(rlkit.__all__) == sorted([*rlkit._EXPORTS, "__version__"])
    for name, module in rlkit._EXPORTS.items():
        value = getattr(rlkit, name)
        if name == "compare" and isinstance(value, type(rlkit)):
            continue  # the rlkit.compare package, callable as the function (its own test)
        assert value is getattr(importlib.import_module(module), name), name
    assert "Algorithm" in dir(rlkit)
    with pytest.raises(AttributeError, match="Algorithmm"):
        _ = rlkit.Algorithmm  # type: ignore[attr-defined]


def test_only_the_exiting_command_line_freezes_the_garbage_collector() -> None:
    """``rlkit``'s exit skips the final collections (``gc.freeze``) only when the process is
    the command line on its way out: ``main(argv)`` called from Python leaves gc alone, and the
    console script keeps its exit status."""
    import gc
    import subprocess
    import sys

    from rlkit.cli import main

    before = gc.get_freeze_count()
    with pytest.raises(SystemExit) as exc:
        main(["plugins"])
    assert exc.value.code == 0 and gc.get_freeze_count() == before
    done = subprocess.run([sys.executable, "-m", "rlkit", "compare", "/nonexistent.yaml"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "does not exist" in done.stderr
