"""Scale (docs/scaling.md): LoRA with the adapter-disabled policy as reference, memory switches,
data-parallel ranks under torchrun (gloo), and the vLLM backend (GPU only: skipped here)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import make_run, read_rows, tiny_config

NONDETERMINISTIC = ("perf/", "train/wall_s")
LORA = {"r": 4, "alpha": 8.0}


def _config(algorithm: str, **overrides) -> dict:
    """``tiny_config`` for ``algorithm`` with its own defaults (REINFORCE's keys dropped)."""
    config = tiny_config(**{"algorithm.name": algorithm, **overrides})
    if algorithm != "reinforce":
        config["algorithm"].pop("baseline")
        config["algorithm"].pop("samples_per_prompt")
    return config


def _deterministic(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith(NONDETERMINISTIC)}


def _same_rows(a: list[dict], b: list[dict], rel: float = 1e-5, abs_: float = 1e-6,
               counts: float | None = None) -> None:
    """Equal rows within tolerance; ``counts``: the tolerance of value/clipfrac, a count of
    strict inequalities between values that tie exactly in one process (V_old + (V − V_old)
    vs V) and so flip on float noise of 1e-8."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        x, y = _deterministic(x), _deterministic(y)
        assert x.keys() == y.keys()
        for key in x:
            if counts is not None and key == "value/clipfrac":
                assert abs(x[key] - y[key]) <= counts, (key, x[key], y[key])
                continue
            assert math.isclose(x[key], y[key], rel_tol=rel, abs_tol=abs_), (key, x[key], y[key])


def _storages(*modules: torch.nn.Module | None) -> dict[int, int]:
    """Distinct parameter storages (data_ptr → elements) held by ``modules``."""
    seen: dict[int, int] = {}
    for module in modules:
        if module is None:
            continue
        for p in module.parameters():
            seen[p.data_ptr()] = p.numel()
    return seen


# ---------------------------------------------------------------------------------------------
# LoRA
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False])
def test_lora_reference_is_the_policy_with_its_adapter_disabled_no_second_copy(tmp_path, shared):
    from rlkit.models import AdapterDisabled

    run = make_run(tmp_path, _config("ppo_clip", **{"policy.lora": LORA,
                                                    "critic.shared": shared}))
    assert isinstance(run.reference, AdapterDisabled) and run.reference.model is run.policy
    assert list(run.reference.parameters()) == []  # owns nothing: it *is* the policy's base
    base = {p.data_ptr() for n, p in run.policy.named_parameters() if "lora_" not in n}
    trained = [n for n, p in run.policy.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained)
    held = _storages(run.policy, run.reference, run.critic)
    if shared:  # one set of base weights in the whole run: the policy's (+ a value head)
        assert set(held) == set(_storages(run.policy)) | set(_storages(run.critic))
        assert sum(held.values()) == (sum(p.numel() for p in run.policy.parameters())
                                      + run.critic.head.weight.numel() + 1)
    else:  # the critic is its own model (a trunk copy); the reference still adds nothing
        assert base <= set(held) and not (base & set(_storages(run.critic)))

    full = make_run(tmp_path, _config("ppo_clip"), name="full")
    assert not (set(_storages(full.reference)) & set(_storages(full.policy)))  # a copy

    # the adapter starts at zero: policy, reference and the full run's policy agree exactly
    exp, _ = run.rollout(1)
    assert float(exp.kl.abs().max()) == 0.0
    with torch.no_grad():
        for name, p in run.policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)  # now the adapter changes the policy; the reference must not move
    ref_after = run.reference_logprobs(exp)
    torch.testing.assert_close(ref_after, exp.ref_logprobs, rtol=0, atol=0)
    assert not torch.equal(run.policy_logprobs(exp, grad=False), exp.logprobs)


@pytest.mark.parametrize("algorithm", ["ppo_clip", "dpo"])
def test_lora_run_trains_only_the_adapter_and_resumes_exactly(tmp_path, algorithm):
    overrides = {"policy.lora": LORA, "critic.shared": True, "train.steps": 4,
                 "checkpoint.every": 2}
    config = _config(algorithm, **overrides)
    full = make_run(tmp_path, config, name="full")
    before = {n: p.detach().clone() for n, p in full.policy.named_parameters()}
    full.train()
    for name, p in full.policy.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        assert changed if "lora_B" in name else (changed or "lora_" not in name) and (
            "lora_" in name or not changed), name  # the adapter moves, the base never
    ckpt = full.run_dir / "checkpoints" / "step_000004"
    assert (ckpt / "adapter.safetensors").exists() and not (ckpt / "policy.safetensors").exists()

    killed = make_run(tmp_path, config, name="killed")
    real_step = killed.train_step

    def die_at_3(trackers):
        if killed.step == 2:
            raise KeyboardInterrupt  # after step 2's checkpoint, during step 3
        return real_step(trackers)

    killed.train_step = die_at_3
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    resumed = make_run(tmp_path, config, resume=True, name="killed")
    resumed.train()
    _same_rows(read_rows(full.run_dir / "metrics.jsonl"),
               read_rows(resumed.run_dir / "metrics.jsonl"))


def test_every_registered_algorithm_runs_with_lora(tmp_path):
    from rlkit.plugins import get_plugin_manager

    for name in sorted(get_plugin_manager().registry.algorithms):
        run = make_run(tmp_path, _config(name, **{"policy.lora": LORA, "train.steps": 1,
                                                  "critic.shared": True}), name=name)
        row = run.train()
        assert math.isfinite(row["loss/total"]), name


@pytest.mark.parametrize("merged", [True, False])
def test_final_lora_policy_saved_merged_or_as_an_adapter(tmp_path, merged):
    from transformers import AutoModelForCausalLM

    config = _config("reinforce", **{"policy.lora": LORA, "train.steps": 2,
                                     "train.save_merged": merged})
    run = make_run(tmp_path, config)
    run.train()
    target = run.run_dir / "policy"
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.no_grad():
        expected = run.policy(input_ids=ids).logits
        if merged:
            loaded = AutoModelForCausalLM.from_pretrained(target).eval()
        else:
            from peft import PeftModel

            assert (target / "adapter_config.json").exists()
            base = AutoModelForCausalLM.from_pretrained(target / "base").eval()
            loaded = PeftModel.from_pretrained(base, target)
        torch.testing.assert_close(loaded(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)


LEARN = {"ppo_clip": (3e-3, 0.02), "dpo": (1e-2, 0.05)}  # lr; margin over the SFT policy


@pytest.mark.parametrize("algorithm", sorted(LEARN))
def test_lora_run_learns_on_the_review_world(reviews_cache: Path,
                                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             algorithm: str) -> None:
    """The issue's bar: a LoRA run ends with a held-out reward above the SFT policy's."""
    monkeypatch.setenv("RLKIT_CACHE_DIR", str(reviews_cache))
    lr, margin = LEARN[algorithm]
    run = make_run(tmp_path, {
        "name": algorithm, "seed": 0, "task": {"name": "reviews"},
        "policy": {"model": "task", "lora": {"r": 8}}, "critic": {"shared": True},
        "algorithm": {"name": algorithm, "lr": lr},
        "rollout": {"batch_size": 16, "max_new_tokens": 24},
        "train": {"samples": 640, "threads": 1},
        "eval": {"every": 0, "num_prompts": 128}, "tracking": {"trackers": ["jsonl"]}})
    run.train()
    evals = [r for r in read_rows(run.run_dir / "metrics.jsonl") if "eval/reward" in r]
    sft, final = evals[0], evals[-1]
    assert final["eval/reward"] > sft["eval/reward"] + margin, (sft["eval/reward"],
                                                                 final["eval/reward"])


# ---------------------------------------------------------------------------------------------
# memory switches
# ---------------------------------------------------------------------------------------------


def test_chunked_scoring_is_bit_identical_to_one_forward(tmp_path):
    config = _config("ppo_clip", **{"rollout.batch_size": 8})
    run = make_run(tmp_path, config)
    samples, _ = run.generate(run.train_prompts[:8], 1, seed=5, temperature=1.0,
                              max_new_tokens=6)
    rows = [{"prompt": p} for p in run.train_prompts[:8]]
    whole, _ = run.maker.score(samples, rows, 1.0, with_values=True)
    for size in (1, 3, 5):
        run.config.train.score_batch_size = size
        chunked, _ = run.maker.score(samples, rows, 1.0, with_values=True)
        for name in ("logprobs", "ref_logprobs", "values", "kl", "scores"):
            assert torch.equal(getattr(whole, name), getattr(chunked, name)), (size, name)


def test_gradient_checkpointing_gives_the_same_update(tmp_path):
    rows = []
    for gc in (False, True):
        run = make_run(tmp_path, _config("ppo_clip", **{"train.gradient_checkpointing": gc,
                                                        "train.steps": 2}), name=f"gc{gc}")
        run.train()
        rows.append(read_rows(run.run_dir / "metrics.jsonl"))
    _same_rows(rows[0], rows[1], rel=1e-4, abs_=1e-5)


def test_bf16_frozen_weights_keep_the_adapter_in_fp32(tmp_path):
    config = _config("ppo_clip", **{"policy.lora": LORA, "train.bf16_weights": "frozen",
                                    "train.steps": 1, "train.offload_frozen": True})
    run = make_run(tmp_path, config)
    dtypes = {n: p.dtype for n, p in run.policy.named_parameters()}
    assert all(d == torch.float32 for n, d in dtypes.items() if "lora_" in n)
    assert all(d == torch.bfloat16 for n, d in dtypes.items() if "lora_" not in n)
    row = run.train()
    assert math.isfinite(row["loss/total"]) and row["perf/peak_memory_mb"] > 0


# ---------------------------------------------------------------------------------------------
# data parallelism
# ---------------------------------------------------------------------------------------------


def test_a_slice_of_the_batch_samples_what_the_whole_batch_samples():
    """Rank r samples rows offset… of the global noise: the tokens one process draws."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlkit.rollout import sample

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=40,
                                       n_positions=32)).eval()
    prompts = torch.randint(3, 40, (6, 4))
    mask = torch.ones_like(prompts)
    kw = {"max_new_tokens": 8, "eos_id": 1, "pad_id": 0, "temperature": 1.0}
    whole = sample(model, prompts, mask, generator=torch.Generator().manual_seed(7), **kw)
    for start, stop in ((0, 3), (3, 6), (2, 5)):
        part = sample(model, prompts[start:stop], mask[start:stop], row_offset=start,
                      total_rows=6, generator=torch.Generator().manual_seed(7), **kw)
        width = part.response_mask.shape[1]
        assert torch.equal(part.input_ids, whole.input_ids[start:stop, :4 + width])
    # and the noise form draws exactly what torch.multinomial draws
    probs = torch.rand(5, 40).softmax(-1)
    a = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(3)).squeeze(1)
    q = torch.empty_like(probs).exponential_(1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, (probs / q).argmax(-1))


RANKS_SCRIPT = """
import json, sys
from rlkit.config import load_config
from rlkit.core.run import Run
import torch.distributed as dist
for path in sys.argv[2:]:
    Run(load_config(path), out=sys.argv[1]).train()
dist.destroy_process_group()
"""


#: run name -> (algorithm, its options) of the 2-rank comparison
RANKED_RUNS: dict[str, tuple[str, dict]] = {
    "reinforce": ("reinforce", {}),
    "ppo_clip": ("ppo_clip", {}),
    # advantages whitened per minibatch: over the minibatch, not each rank's half of it
    "ppo_max": ("ppo_max", {}),
    # judged pairs, 3 sampled and 2 kept (the budget counts 3), and KTO's mismatched anchors
    # (rows that are not data, and a loss averaged over the labelled rows only)
    "dpo_online": ("dpo", {"mode": "online", "samples_per_prompt": 3}),
    "kto": ("kto", {}),
}
#: means over a subset of a micro-batch's rows (DPO: the untied pairs; KTO: the desirable or
#: the undesirable rows): merged across ranks weighted by each rank's share of the loss, they
#: equal the one-process value only when that subset falls evenly (documented in docs/scaling.md)
CONDITIONAL_MEANS = ("rewards/chosen", "rewards/rejected", "rewards/margins",
                     "rewards/accuracies")


def test_two_processes_log_what_one_process_logs(tmp_path):
    """torchrun, 2 ranks on gloo: every logged metric (wall time and perf/ apart) equals the
    1-process run's within 1e-5 relative or 1e-6 absolute (seen: ≤ 2.3e-6 relative, ≤ 2e-6
    absolute; rounding of forwards over fewer rows), except value/clipfrac, a count of exact
    ties (seen: 0.049; bound 0.1), and the conditional means above."""
    configs = []
    for name, (algorithm, extra) in RANKED_RUNS.items():
        # grad_accum_steps 1: one process takes each minibatch whole, 2 ranks split it in two
        data = _config(algorithm, **{"name": name, "rollout.batch_size": 6, "train.steps": 3,
                                     "eval.every": 2, "eval.num_prompts": 6})
        data["algorithm"].update(extra)
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps(data))
        configs.append(path)
        one = make_run(tmp_path / "one", data)
        one.train()
    script = tmp_path / "ranks.py"
    script.write_text(textwrap.dedent(RANKS_SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         "2", str(script), str(tmp_path / "two"), *map(str, configs)],
        capture_output=True, text=True, timeout=400, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in RANKED_RUNS:
        one_rows = read_rows(tmp_path / "one" / "runs" / name / "metrics.jsonl")
        two_rows = read_rows(tmp_path / "two" / name / "metrics.jsonl")
        assert [r["train/step"] for r in two_rows] == [0, 1, 2, 3]
        assert two_rows[-1]["train/samples"] == one_rows[-1]["train/samples"], name
        strip = [{k: v for k, v in r.items() if k not in CONDITIONAL_MEANS}
                 for r in (*one_rows, *two_rows)]
        try:
            _same_rows(strip[:len(one_rows)], strip[len(one_rows):], rel=1e-5, abs_=1e-6,
                       counts=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
    online = read_rows(tmp_path / "two" / "dpo_online" / "metrics.jsonl")[-1]
    assert online["train/samples"] == 3 * 6 * 3  # steps × prompts × sampled (2 of 3 kept)


# ---------------------------------------------------------------------------------------------
# vLLM
# ---------------------------------------------------------------------------------------------


def test_the_core_never_imports_vllm():
    code = ("import sys; from rlkit.plugins import make_plugin_manager; "
            "pm = make_plugin_manager([]); import rlkit.core.run, rlkit_vllm; "
            "print('vllm' in sys.modules, 'vllm' in pm.registry.backends)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "False"
    assert out[1] == str(importlib.util.find_spec("vllm") is not None)


GPU_VLLM = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None,
    reason="the vLLM backend needs a CUDA GPU and `pip install rlkit[vllm]`")


@GPU_VLLM
def test_vllm_backend_samples_with_its_own_logprobs_and_follows_updates(tmp_path):
    """Not run where this was written (no GPU): vLLM samples, returns its own log-probs, and
    after each update holds the trained weights (else the mismatch would grow with the KL)."""
    config = _config("reinforce", **{
        "rollout.backend": "vllm", "train.device": "cuda", "train.steps": 3,
        # vLLM's attention kernels need a head size of 64 or more
        "policy.config": {"n_layer": 2, "n_head": 2, "n_embd": 128, "n_positions": 64}})
    run = make_run(tmp_path, config)
    exp, info = run.rollout(1)
    assert info.sampler_logprobs is not None and info.sampler_logprobs.abs().sum() > 0
    assert not torch.equal(info.sampler_logprobs, exp.logprobs)  # vLLM's own numbers
    run.train()
    rows = [r for r in read_rows(run.run_dir / "metrics.jsonl") if r["train/step"] > 0]
    assert all(r["rollout/logprob_mismatch"] < 0.1 for r in rows), rows


def test_auto_threads_one_for_a_small_policy_else_this_process_share(monkeypatch):
    from rlkit.core.run import ONE_THREAD_BELOW, THREADS_SHARE_ENV, auto_threads

    monkeypatch.delenv(THREADS_SHARE_ENV, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert auto_threads(ONE_THREAD_BELOW - 1) == 1
    assert auto_threads(ONE_THREAD_BELOW) == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores))  # torchrun: one process per core
    assert auto_threads(10 * ONE_THREAD_BELOW) == 1
    monkeypatch.setenv(THREADS_SHARE_ENV, "3")  # a grid worker's share wins
    assert auto_threads(10 * ONE_THREAD_BELOW) == 3
    assert auto_threads(1000) == 1


@pytest.mark.parametrize(("setting", "expected"), [("auto", 1), (2, 2)])
def test_train_threads_is_what_the_run_uses(tmp_path, setting, expected):
    torch.set_num_threads(3)
    try:
        run = make_run(tmp_path, tiny_config(**{"train.threads": setting}))
        assert run.config.train.threads == setting
        assert torch.get_num_threads() == expected  # the tiny policy: auto → 1
    finally:
        torch.set_num_threads(1)


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=40,
                                      n_positions=64)).eval()


def test_the_static_decoder_samples_the_eager_tokens_when_not_compiled():
    """The fixed-shape loop (static cache, full-length mask) is the same computation as the
    default loop: with the plain forward it samples the very same tokens and log-probs, with
    left-padded prompts, EOS, min_new_tokens and top-k (the compiled step then only changes
    how the kernels round)."""
    from rlkit.rollout import StaticDecoder, sample

    model = _tiny_gpt2()
    prompts = torch.randint(3, 40, (6, 5))
    mask = torch.ones_like(prompts)
    mask[0, :2] = 0  # left padding
    mask[3, :1] = 0
    for kw in ({"max_new_tokens": 9}, {"max_new_tokens": 4, "min_new_tokens": 3, "top_k": 5},
               {"max_new_tokens": 30, "temperature": 0.7}):
        args = {"eos_id": 1, "pad_id": 0, **kw}
        eager = sample(model, prompts, mask, generator=torch.Generator().manual_seed(5), **args)
        static = sample(model, prompts, mask, generator=torch.Generator().manual_seed(5),
                        decoder=StaticDecoder, **args)
        assert torch.equal(static.input_ids, eager.input_ids)
        assert torch.equal(static.response_mask, eager.response_mask)
        torch.testing.assert_close(static.logprobs, eager.logprobs, rtol=0, atol=1e-6)
    assert bool(eager.ended.any())  # the long case reached EOS on some rows


def test_hf_compiled_backend_falls_back_to_the_eager_loop_with_the_same_noise(monkeypatch,
                                                                             caplog):
    """Compilation unavailable: one warning naming the failure, then exactly ``hf``'s
    samples (the generator is rewound, so no noise is lost)."""
    from rlkit.backends import HFBackend, HFCompiledBackend, SamplingParams

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    model = _tiny_gpt2()
    tok = type("Tok", (), {"eos_token_id": 1, "pad_token_id": 0})()
    prompts, mask = torch.randint(3, 40, (4, 5)), torch.ones(4, 5, dtype=torch.long)
    params = SamplingParams(max_new_tokens=6)
    want = HFBackend(model, tok, torch.device("cpu"), None).generate(
        prompts, mask, params, torch.Generator().manual_seed(2))
    backend = HFCompiledBackend(model, tok, torch.device("cpu"), None)
    with caplog.at_level("WARNING"):
        got = backend.generate(prompts, mask, params, torch.Generator().manual_seed(2))
    assert torch.equal(got.input_ids, want.input_ids)
    assert "no C++ compiler found" in caplog.text and "eager hf loop" in caplog.text
    assert backend.failed is not None


def test_hf_compiled_backend_run_learns_the_same_distribution(tmp_path):
    """A run on the compiled decode loop: it compiles (no fallback), its sampler's log-probs
    agree with the engine's scoring forward to float rounding, and its sampled rewards match
    the eager sampler's at the first step (same noise, same weights: what differs is only
    rounding, so almost every token is the same)."""
    config = tiny_config(**{"rollout.backend": "hf_compiled", "train.steps": 2,
                            "rollout.batch_size": 8})
    run = make_run(tmp_path, config, name="compiled")
    run.train()
    assert run.backend.failed is None, run.backend.failed
    rows = read_rows(run.run_dir / "metrics.jsonl")
    train = [r for r in rows if r.get("rollout/logprob_mismatch") is not None]
    assert train and max(r["rollout/logprob_mismatch"] for r in train) < 1e-4
    eager = make_run(tmp_path, tiny_config(**{"train.steps": 2, "rollout.batch_size": 8}),
                     name="eager")
    eager.train()
    first = [r for r in read_rows(eager.run_dir / "metrics.jsonl")
             if r.get("objective/reward") is not None][0]
    assert train[0]["objective/reward"] == pytest.approx(first["objective/reward"], abs=0.25)


@pytest.mark.parametrize("lora", [False, True])
def test_a_shared_critic_reads_the_policy_forward_one_trunk_pass_for_both(tmp_path, lora):
    """``critic.shared``: the scoring pass and every update minibatch run the trunk once for
    log-probs and values together; the log-probs are bit-identical to the policy-only forward
    and the values to the critic's own forward."""
    from rlkit.models import SharedValueModel
    from rlkit.rollout import forward_response, forward_values

    extra = {"policy.lora": LORA} if lora else {}
    run = make_run(tmp_path, _config("ppo_clip", **{"critic.shared": True, **extra}))
    assert isinstance(run.critic, SharedValueModel) and run.critic.fuses_with(run.policy)
    with torch.no_grad():
        run.critic.head.bias.fill_(1.0)  # V = 1, so the value loss has something to fit
    calls = []
    hook = run.critic.trunk.register_forward_hook(lambda *a: calls.append(1))
    exp, _ = run.batch(1)
    sampling = exp.input_ids.shape[1] - exp.prompt_len  # prefill + one call per later token
    reference = 1 if lora else 0  # under LoRA the reference is this trunk, adapter off
    assert len(calls) == sampling + 1 + reference  # one pass scored log-probs and values
    hook.remove()
    with torch.no_grad():
        alone, _ = forward_response(run.policy, exp.input_ids, exp.attention_mask,
                                    exp.prompt_len, 1.0)
        values = forward_values(run.critic, exp.input_ids, exp.attention_mask, exp.prompt_len)
    assert torch.equal(exp.logprobs, alone * exp.response_mask)
    assert torch.equal(exp.values, values * exp.response_mask)

    calls.clear()
    hook = run.critic.trunk.register_forward_hook(lambda *a: calls.append(1))
    run.algorithm.prepare(exp)
    stats = run.update(exp, 1, 1.0)
    hook.remove()
    c = run.algo_config
    assert len(calls) == c.epochs * c.num_minibatches  # not twice that
    assert math.isfinite(stats["loss/value"]) and stats["value/grad_norm"] > 0


def test_gathered_info_keeps_the_sample_count_and_the_pairs_scores():
    """Under data parallelism each rank's RolloutInfo is concatenated: the sequences the step
    consumed (judged pairs: k sampled, 2 kept) add up over ranks, and the kept rows' R′ (what
    objective/rlhf_reward reads for judged pairs) follow the rows."""
    from rlkit.core.distributed import concat_info
    from rlkit.core.experience import RolloutInfo

    def part(n: int, sampled: int | None, offset: float) -> RolloutInfo:
        return RolloutInfo(raw_scores=torch.zeros(n), responses=["r"] * n,
                           ended=torch.ones(n, dtype=torch.bool), n_samples=sampled,
                           penalized_scores=torch.arange(n, dtype=torch.float) + offset)

    merged = concat_info([part(4, 6, 0.0), part(4, 6, 10.0)], torch.device("cpu"))
    assert merged.n_samples == 12
    assert merged.penalized_scores is not None
    assert merged.penalized_scores.tolist() == [0, 1, 2, 3, 10, 11, 12, 13]
    assert concat_info([part(2, None, 0.0), part(2, None, 0.0)],
                       torch.device("cpu")).n_samples is None
