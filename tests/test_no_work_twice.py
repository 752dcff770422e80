"""The engine's speed-ups change no logged metric: every built-in algorithm, 3 steps on the
toy task, logs exactly (bit for bit) the rows it logged before them (``perf/*`` and wall time
aside). The golden rows in ``tests/data/golden_metrics.json`` were generated from the engine
*before* those changes (``python tests/test_no_work_twice.py --write``), with two corrections
of online DPO's rollout metrics: ``rollout/logprob_mismatch`` was 0.03–0.63 there because it
compared the sampler's log-probs with those of the kept pairs in another row order, and
``objective/rlhf_reward`` averaged the pairs' 1/0 preference labels instead of the reward (both
fixed, and pinned by ``test_online_pairs_measure_their_rollout_row_for_row``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import make_run, read_rows, tiny_config

GOLDEN = Path(__file__).parent / "data" / "golden_metrics.json"

# name -> config overrides; "dpo_online" is DPO with on-policy pairs
ALGORITHMS: dict[str, dict[str, Any]] = {
    "reinforce": {}, "a2c": {}, "ppo_clip": {}, "ppo_kl": {}, "ppo_max": {}, "dpo": {},
    "dpo_online": {"algorithm.name": "dpo", "algorithm.mode": "online"},
    "grpo": {}, "rloo": {}, "reinforce_pp": {}, "kto": {}, "simpo": {}, "orpo": {},
}


def _config(name: str) -> dict[str, Any]:
    overrides = {"algorithm.name": name, "train.threads": 1, **ALGORITHMS[name]}
    config = tiny_config(**overrides)
    config["algorithm"].pop("baseline")
    return config


def _deterministic(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("perf/") and k != "train/wall_s"}


def metrics_of(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    run = make_run(tmp_path, _config(name), name=name)
    run.train()
    return [_deterministic(r) for r in read_rows(run.run_dir / "metrics.jsonl")]


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_metrics_are_bit_identical_to_the_golden_rows(tmp_path: Path, name: str) -> None:
    import torch

    torch.set_num_threads(1)
    golden = json.loads(GOLDEN.read_text())[name]
    rows = json.loads(json.dumps(metrics_of(tmp_path, name)))  # the same float round trip
    assert len(rows) == len(golden)
    for got, want in zip(rows, golden, strict=True):
        assert got.keys() == want.keys()
        diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        assert not diff, diff


if __name__ == "__main__" and "--write" in sys.argv:
    import os
    import tempfile

    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    torch.set_num_threads(1)
    out: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RLKIT_CACHE_DIR"] = str(Path(tmp) / "cache")
        for algo in ALGORITHMS:
            from rlkit.plugins import set_plugin_manager

            set_plugin_manager(None)
            out[algo] = metrics_of(Path(tmp), algo)
    GOLDEN.write_text(json.dumps(out, indent=0, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}: {sum(len(v) for v in out.values())} rows")


@pytest.mark.parametrize(("name", "overrides", "skipped"), [
    ("dpo", {}, True), ("simpo", {}, True), ("orpo", {}, True),
    ("dpo", {"algorithm.num_minibatches": 2}, False),
    ("dpo", {"algorithm.loss_type": "bco_pair"}, False), ("kto", {}, False),
])
def test_offline_pairs_skip_the_policy_forward_only_where_the_update_recomputes_it(
        tmp_path: Path, name: str, overrides: dict[str, Any], skipped: bool) -> None:
    import math

    config = _config(name)
    for key, value in overrides.items():
        config["algorithm"][key.split(".")[1]] = value
    run = make_run(tmp_path, config)
    exp, _ = run.batch(1)
    assert exp.logprobs_pending is skipped
    run.algorithm.prepare(exp)
    stats = run.update(exp, 1, 1.0)
    assert not exp.logprobs_pending
    assert math.isfinite(float(exp.logprobs.sum()))
    if skipped:  # the first minibatch's ratio to π_old is exactly 1
        assert stats["policy/ratio_mean"] == 1.0


def _rows_with(tmp_path: Path, name: str, **overrides: Any) -> list[dict[str, Any]]:
    from rlkit.plugins import set_plugin_manager

    set_plugin_manager(None)
    config = _config(name)
    for key, value in overrides.items():
        section, field = key.split(".")
        config.setdefault(section, {})[field] = value
    run = make_run(tmp_path, config, name=f"{name}-{'-'.join(map(str, overrides.values()))}")
    run.train()
    return json.loads(json.dumps([_deterministic(r) for r in
                                  read_rows(run.run_dir / "metrics.jsonl")]))


@pytest.mark.parametrize("name", ["ppo_clip", "grpo", "dpo"])
def test_for_loop_adamw_is_bit_identical_and_fused_adamw_only_rounds_differently(
        tmp_path: Path, name: str) -> None:
    """``train.optimizer_impl``: the default ``foreach`` (the golden rows were made with torch's
    CPU default, ``for_loop``) and ``for_loop`` log the golden rows bit for bit; ``fused`` is
    the same optimizer in another summation order (what is measured before the first update is
    identical; later values move only by float rounding), never a different method."""
    import torch

    torch.set_num_threads(1)
    golden = json.loads(GOLDEN.read_text())[name]
    assert _rows_with(tmp_path, name, **{"train.optimizer_impl": "for_loop"}) == golden
    fused = _rows_with(tmp_path, name, **{"train.optimizer_impl": "fused"})
    assert [r.keys() for r in fused] == [r.keys() for r in golden]
    # measured before the first optimizer step: the first rollout's reward, or (one update
    # per step) the first loss
    before = "objective/reward" if "objective/reward" in golden[1] else "loss/total"
    assert fused[1][before] == golden[1][before]
    for got, want in zip(fused, golden, strict=True):
        for key in ("loss/total", "objective/reward", "policy/grad_norm"):
            if key in want and want[key] is not None:
                assert got[key] == pytest.approx(want[key], rel=2e-3, abs=1e-5), key
    assert fused != golden  # it is not the same arithmetic: a switch, not the default


def test_scoring_and_training_forwards_build_no_kv_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forward that only reads logits or values asks the model for no cache: the log-probs
    and values are those of the default call, and transformers builds no ``DynamicCache``; a
    model whose config has no ``use_cache`` (a plugin's own module) gets no such keyword."""
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

    from rlkit.models import ValueModel
    from rlkit.rollout import forward_response, forward_values, no_cache

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=64)
    policy = GPT2LMHeadModel(config).eval()
    critic = ValueModel(GPT2Model(config), torch.nn.Linear(32, 1)).eval()
    ids = torch.randint(4, 50, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # a left-padded prompt
    built: list[object] = []
    real_init = transformers.DynamicCache.__init__

    def counting_init(self: object, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(transformers.DynamicCache, "__init__", counting_init)
    logprobs, entropy = forward_response(policy, ids, mask, 5, 1.0)
    values = forward_values(critic, ids, mask, 5)
    assert built == []
    assert no_cache(policy) == {"use_cache": False} == no_cache(critic.backbone)

    # the same numbers as the model's default call, which does build a cache
    from rlkit.rollout import _response_logprobs, position_ids_from_mask

    positions = position_ids_from_mask(mask)
    default = policy(input_ids=ids, attention_mask=mask, position_ids=positions)
    assert len(built) == 1
    want, want_entropy = _response_logprobs(default.logits, ids, 5, 1.0, True, True)
    assert torch.equal(logprobs, want) and entropy is not None
    assert torch.equal(entropy, want_entropy)
    hidden = critic.backbone(input_ids=ids, attention_mask=mask, position_ids=positions)
    assert torch.equal(values, critic.head(hidden.last_hidden_state).squeeze(-1)[:, 4:-1])

    class Plain(torch.nn.Module):  # no config: called exactly as before
        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any) -> Any:
            return torch.zeros(input_ids.shape)

    assert no_cache(Plain()) == {}
    assert forward_values(Plain(), ids, mask, 5).shape == (3, 7)


def test_online_pairs_measure_their_rollout_row_for_row(tmp_path: Path) -> None:
    """Online DPO keeps the best and the worst of each prompt's samples, best first, so the
    pairs are the sampled rows in another order, and their ``scores`` become 1/0 labels.
    ``rollout/logprob_mismatch`` must compare each kept row's sampler log-probs with its own
    scoring log-probs (they differ only by the numerics of the cached decode), and
    ``objective/rlhf_reward`` is the reward minus β·KL, as for every other algorithm (here every
    pair is a distinct pair of samples, so the kept rows are the sampled ones)."""
    import torch

    torch.set_num_threads(1)
    rows = [r for r in metrics_of(tmp_path, "dpo_online") if "objective/reward" in r]
    assert len(rows) == 3
    for r in rows:
        assert 0.0 <= r["rollout/logprob_mismatch"] < 1e-5
        assert r["objective/rlhf_reward"] == pytest.approx(
            r["objective/reward"] - r["policy/kl_coef"] * r["objective/kl"], rel=1e-6, abs=1e-7)
