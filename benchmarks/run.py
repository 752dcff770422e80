"""Time rlkit's training loop on a fixed workload.

    python benchmarks/run.py --workload W1 --algo ppo_clip
    python benchmarks/run.py --workload W2 --algo all --json results.json
    python benchmarks/run.py --workload W1 --algo ppo_clip --profile cprofile

A run is built from a config dict through rlkit's public API (``rlkit.config.load_config``,
``rlkit.engine.Run(config, out=...)``, ``run.train()``); loading (config, models, data) is
timed apart from training. The first ``--warmup`` steps are discarded; the next ``--steps``
are timed. A step's wall time runs from the end of one update to the end of the next (an
``rlkit_after_update`` hook stamps it), so it covers everything the loop does per step;
the rollout/update split comes from the ``perf/*`` metrics rlkit logs in ``metrics.jsonl``.

Every completion is exactly L tokens: with ``rollout.min_new_tokens`` (when rlkit's config
has it) or, until then, a forward hook on the policy that sets the EOS logit to -1e4 so EOS is
never sampled. The harness checks ``rollout/response_length == L`` from the metrics.

``--algo all`` runs every algorithm, each in a fresh process (peak memory is per process).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pluggy  # noqa: E402
import workloads  # noqa: E402
from common import (  # noqa: E402
    env_with_source,
    export_rlkit,
    load_average,
    median,
    peak_rss_mb,
    print_result,
    quiet_environment,
    rlkit_source,
    summarize,
    write_result,
)

# name -> (algorithm section, rlkit-side notes). Names are the --algo choices.
ALGOS: dict[str, dict[str, Any]] = {
    "reinforce": {"name": "reinforce", "baseline": "leave_one_out", "samples_per_prompt": 4},
    "a2c": {"name": "a2c"},
    "ppo_clip": {"name": "ppo_clip"},
    "ppo_kl": {"name": "ppo_kl"},
    "ppo_max": {"name": "ppo_max"},
    "dpo": {"name": "dpo"},  # offline: pairs from the workload's preference file
    "dpo_online": {"name": "dpo", "mode": "online"},
}
PROFILE_MODES = ("none", "cprofile", "torch")
# the same marker as rlkit.hookimpl; pluggy accepts implementations that take a subset of a
# hook's arguments, so these keep working whatever object the engine hands its hooks
hookimpl = pluggy.HookimplMarker("rlkit")


def has_min_new_tokens() -> bool:
    from rlkit.config import RolloutConfig

    return "min_new_tokens" in RolloutConfig.model_fields


def rlkit_config(workload: workloads.Workload, art: workloads.Artifacts, algo: str,
                 total_steps: int, threads: int, min_new_tokens: bool) -> dict[str, Any]:
    section = {**ALGOS[algo], "lr": workload.lr}
    k = section.get("samples_per_prompt", 2 if algo == "dpo_online" else 1)
    rollout: dict[str, Any] = {"batch_size": workload.batch,
                               "max_new_tokens": workload.response_len}
    if min_new_tokens:
        rollout["min_new_tokens"] = workload.response_len
    config: dict[str, Any] = {
        "name": f"{workload.name}-{algo}",
        "seed": 0,
        "prompts": {"train": str(art.prompts_train), "eval": str(art.prompts_eval)},
        "policy": {"model": str(art.policy)},
        "reward": {"model": str(art.reward), "batch_size": workload.batch * max(k, 2)},
        "algorithm": section,
        "rollout": rollout,
        "train": {"steps": total_steps, "device": "cpu", "threads": threads},
        "eval": {"every": 0, "num_prompts": min(workload.batch, workload.n_eval_prompts)},
        "checkpoint": {"every": 0, "keep_last": 1},
        "tracking": {"trackers": ["jsonl"]},
    }
    if algo == "dpo":
        config["preferences"] = str(art.preferences)
    return config


def suppress_eos(model: Any, eos_id: int) -> None:
    """Make EOS unsampleable: its logit becomes -1e4 (not -inf, so entropies stay finite)."""
    import torch

    def hook(module: Any, args: Any, output: Any) -> None:
        logits = output.logits
        index = torch.tensor([eos_id], device=logits.device)
        output.logits = logits.index_fill(-1, index, -1e4)

    model.register_forward_hook(hook)


class BenchPlugin:
    """Registered with rlkit's plugin manager: loads the policy (EOS suppressed when rlkit
    has no ``rollout.min_new_tokens``), stamps the end of every update, and switches the
    profiler on for the timed steps only."""

    def __init__(self, policy_dir: Path, eos_hook: bool, warmup: int, last: int,
                 profile: str) -> None:
        self.policy_dir = str(policy_dir)
        self.eos_hook = eos_hook
        self.warmup, self.last = warmup, last
        self.stamps: dict[int, float] = {}
        self.cpu_stamps: dict[int, float] = {}
        self.profile = profile
        self.profiler: Any = None

    @hookimpl
    def rlkit_load_model(self, spec: Any, role: str) -> Any:
        if not self.eos_hook or role != "policy" or str(spec) != self.policy_dir:
            return None
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(self.policy_dir)
        tokenizer = AutoTokenizer.from_pretrained(self.policy_dir)
        suppress_eos(model, tokenizer.eos_token_id)
        return model, tokenizer

    @hookimpl
    def rlkit_after_update(self, step: int) -> None:
        self.stamps[step] = time.perf_counter()
        self.cpu_stamps[step] = time.process_time()
        if self.profile != "none" and step == self.warmup:
            self._start_profiler()
        if self.profiler is not None and step == self.last:
            self._stop_profiler()
        return None

    def _start_profiler(self) -> None:
        if self.profile == "cprofile":
            self.profiler = cProfile.Profile()
            self.profiler.enable()
        else:
            import torch.profiler

            self.profiler = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=False)
            self.profiler.start()

    def _stop_profiler(self) -> None:
        if self.profile == "cprofile":
            self.profiler.disable()
        else:
            self.profiler.stop()
        self.finished_profiler, self.profiler = self.profiler, None


def _register(plugin: BenchPlugin) -> None:
    from rlkit.plugins import get_plugin_manager

    get_plugin_manager().register(plugin, name="rlkit-benchmark")


def _read_rows(out_dir: Path, name: str) -> list[dict[str, Any]]:
    path = out_dir / name / "metrics.jsonl"
    if not path.is_file():
        found = sorted(out_dir.rglob("metrics.jsonl"))
        if not found:
            raise SystemExit(f"no metrics.jsonl under {out_dir}")
        path = found[0]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# (label, test on (file, line, function)): the largest cumulative time among matches counts
PROFILE_BUCKETS: list[tuple[str, Any]] = [
    ("rlkit sampling loop (KV-cached decode, its forwards included)",
     lambda f, n: n == "sample" and "rlkit" in f and "rollout" in f),
    ("every nn.Module call (all forwards: sampling, scoring, update)",
     lambda f, n: n == "_wrapped_call_impl" and f.endswith("module.py")),
    ("autograd backward", lambda f, n: n == "backward" and f.endswith("autograd/__init__.py")),
    ("optimizer step (AdamW)", lambda f, n: n == "step" and "/optim/adam" in f),
    ("gradient-norm clipping", lambda f, n: n == "clip_grad_norm_"),
    ("reward scoring (reward model call)", lambda f, n: n == "__call__" and "scoring" in f),
    ("tokenizer encode/decode", lambda f, n: n in ("batch_decode", "__call__", "_batch_encode_plus")
     and "tokenization_utils" in f),
    ("metrics JSONL logging", lambda f, n: n == "log" and "tracking" in f),
]


def profile_buckets(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Cumulative seconds per bucket (buckets overlap: forwards run inside sampling)."""
    out = []
    for label, test in PROFILE_BUCKETS:
        times = [ct for (f, _line, n), (_cc, _nc, _tt, ct, _callers) in stats.stats.items()
                 if test(f, n)]
        if times:
            out.append((label, max(times)))
    return out


def _profile_report(plugin: BenchPlugin, mode: str, top: int) -> str:
    prof = getattr(plugin, "finished_profiler", None)
    if prof is None:
        return "(the profiler did not run: fewer steps than --warmup + --steps?)"
    if mode == "torch":
        return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
    buffer = io.StringIO()
    stats = pstats.Stats(prof, stream=buffer)
    total = stats.total_tt
    buffer.write(f"cProfile of the timed steps: {total:.2f} s\n")
    for label, seconds in profile_buckets(stats):
        buffer.write(f"  {100 * seconds / total:5.1f}%  {seconds:6.2f} s  {label}\n")
    buffer.write("\n--- rlkit functions by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(r"rlkit", top)
    buffer.write("\n--- everything by internal (self) time ---\n")
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return buffer.getvalue()


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    quiet_environment()
    workload = workloads.get(args.workload)
    art = workloads.prepare(workload, args.work_dir)
    total = args.warmup + args.steps
    import rlkit  # noqa: F401  (import cost is loading, not training)
    from rlkit.config import load_config
    from rlkit.engine import Run

    option = has_min_new_tokens()
    plugin = BenchPlugin(art.policy, eos_hook=not option, warmup=args.warmup, last=total,
                         profile=args.profile)
    _register(plugin)
    data = rlkit_config(workload, art, args.algo, total, args.threads, option)
    out_dir = Path(tempfile.mkdtemp(prefix="rlkit-run-", dir=args.work_dir))
    try:
        t0 = time.perf_counter()
        config = load_config(data=data, overrides=args.set)
        run = Run(config, out=out_dir)
        t1 = time.perf_counter()
        run.train()
        t2 = time.perf_counter()
        rows = [r for r in _read_rows(out_dir, data["name"]) if r.get("train/step", 0) >= 1]
    finally:
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)

    rows.sort(key=lambda r: r["train/step"])
    timed = [r for r in rows if args.warmup < r["train/step"] <= total]
    if len(timed) != args.steps:
        raise SystemExit(f"expected {args.steps} timed steps, metrics.jsonl has {len(timed)}")
    steps = [r["train/step"] for r in timed]
    if all(s in plugin.stamps and s - 1 in plugin.stamps for s in steps):
        wall = [plugin.stamps[s] - plugin.stamps[s - 1] for s in steps]
        cpu = [plugin.cpu_stamps[s] - plugin.cpu_stamps[s - 1] for s in steps]
        wall_source = "rlkit_after_update stamps"
    else:  # the hook did not fire: fall back to the engine's own step time
        wall = [r["perf/step_time_s"] for r in timed]
        cpu = None
        wall_source = "perf/step_time_s"
    previous = {r["train/step"]: r for r in rows}
    episodes, tokens = [], []
    for r in timed:
        before = previous.get(r["train/step"] - 1, {"train/samples": 0, "train/tokens": 0})
        episodes.append(r["train/samples"] - before["train/samples"])
        tokens.append(r["train/tokens"] - before["train/tokens"])

    lengths = sorted({r["rollout/response_length"] for r in timed
                      if "rollout/response_length" in r})
    L = workload.response_len
    if lengths:
        assert all(abs(x - L) < 1e-9 for x in lengths), (
            f"completions are not exactly L={L} tokens: rollout/response_length {lengths}")
        length_check = f"rollout/response_length == {L}"
    else:  # offline DPO logs no rollout metrics: check the tokens per sequence instead
        per_seq = {t / e for t, e in zip(tokens, episodes)}
        assert per_seq == {float(L)}, f"response tokens per sequence {per_seq}, expected {L}"
        length_check = f"train/tokens / train/samples == {L}"

    step_time = sum(r["perf/step_time_s"] for r in timed)
    rollout = sum(r["perf/rollout_time_s"] for r in timed)
    update = sum(r["perf/update_time_s"] for r in timed)
    result: dict[str, Any] = {
        "framework": "rlkit", "workload": workload.name, "algo": args.algo,
        "threads": args.threads, "warmup": args.warmup, "steps": args.steps,
        "episodes_per_step": median(episodes), "tokens_per_step": median(tokens),
        "step_wall_s": wall, "wall_source": wall_source,
        **summarize(wall, episodes, tokens, cpu),
        "engine_step_s": step_time,
        "rollout_share": rollout / sum(wall), "update_share": update / sum(wall),
        "other_share": max(0.0, 1 - step_time / sum(wall)),
        "peak_memory_mb": peak_rss_mb(),
        "rlkit_peak_memory_mb": max(r["perf/peak_memory_mb"] for r in timed),
        "load_s": t1 - t0, "train_s": t2 - t1,
        "eos": "rollout.min_new_tokens" if option else "EOS logit hook (-1e4)",
        "length_check": length_check, "loadavg": load_average(),
        "versions": _versions(), "rlkit_source": rlkit_source(),
        "overrides": list(args.set or []),
    }
    if args.profile != "none":
        result["profile"] = _profile_report(plugin, args.profile, args.profile_top)
    return result


def _versions() -> dict[str, str]:
    import torch
    import transformers

    import rlkit

    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__, "rlkit": rlkit.__version__}


def _child_command(args: argparse.Namespace, algo: str, json_path: str) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--workload", args.workload,
           "--algo", algo, "--warmup", str(args.warmup), "--steps", str(args.steps),
           "--threads", str(args.threads), "--json", json_path, "--quiet"]
    if args.work_dir:
        cmd += ["--work-dir", str(args.work_dir)]
    for item in args.set:
        cmd += ["--set", item]
    return cmd


def run_in_child(args: argparse.Namespace, algo: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        json_path = handle.name
    try:
        proc = subprocess.run(_child_command(args, algo, json_path), capture_output=True,
                              text=True)
        if proc.returncode != 0:
            return {"framework": "rlkit", "workload": args.workload, "algo": algo,
                    "error": (proc.stderr or proc.stdout).strip().splitlines()[-20:]}
        return json.loads(Path(json_path).read_text())
    finally:
        Path(json_path).unlink(missing_ok=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="W1", choices=sorted(workloads.WORKLOADS))
    p.add_argument("--algo", default="ppo_clip", choices=[*ALGOS, "all"])
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--repeat", type=int, default=1, help="runs per algorithm; median reported")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra rlkit config override, e.g. algorithm.epochs=1")
    p.add_argument("--profile", default="none", choices=PROFILE_MODES,
                   help="profile the timed steps (cProfile or torch.profiler)")
    p.add_argument("--profile-top", type=int, default=30)
    p.add_argument("--work-dir", type=Path, default=None,
                   help=f"artifacts and run dirs (default {workloads.DEFAULT_WORK_DIR})")
    p.add_argument("--rlkit-rev", default=None, metavar="REV",
                   help="benchmark rlkit as of this commit (git archive; the work tree is "
                   "left alone) instead of the work tree")
    p.add_argument("--keep", action="store_true", help="keep the run directory")
    p.add_argument("--json", default=None, help="write the result(s) here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be at least 1")
    args.work_dir = args.work_dir or workloads.DEFAULT_WORK_DIR
    args.work_dir.mkdir(parents=True, exist_ok=True)
    return args


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run (by episodes/s) of repeated runs, with every run's figure attached."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[-1]
    ok.sort(key=lambda r: r["episodes_per_s"])
    best = dict(ok[len(ok) // 2])
    best["episodes_per_s"] = median([r["episodes_per_s"] for r in ok])
    best["tokens_per_s"] = median([r["tokens_per_s"] for r in ok])
    best["episodes_per_cpu_s"] = median([r.get("episodes_per_cpu_s", float("nan")) for r in ok])
    best["runs_episodes_per_s"] = [r["episodes_per_s"] for r in results if "error" not in r]
    return best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rlkit_rev and "RLKIT_BENCH_SOURCE" not in os.environ:
        source, sha = export_rlkit(args.rlkit_rev, args.work_dir)
        print(f"rlkit as of {sha[:12]} ({source})", flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None
                                                                else argv)]
        return subprocess.call(cmd, env=env_with_source(source))
    algos = list(ALGOS) if args.algo == "all" else [args.algo]
    if len(algos) == 1 and args.repeat == 1:
        result = run_one(args)
        profile = result.pop("profile", None)
        write_result(result, args.json)
        if not args.quiet:
            print_result(result)
            print(f"      load {result['load_s']:.1f} s, train {result['train_s']:.1f} s, "
                  f"completions {result['length_check']} ({result['eos']}), "
                  f"load average {result['loadavg']}")
            if profile:
                print(profile)
        return 0
    if args.profile != "none":
        raise SystemExit("--profile needs a single --algo and --repeat 1")
    results = []
    for algo in algos:
        runs = [run_in_child(args, algo) for _ in range(args.repeat)]
        result = aggregate(runs)
        results.append(result)
        if "error" in result:
            print(f"rlkit {args.workload} {algo:<12} FAILED: {result['error'][-1]}")
        else:
            print_result(result)
        sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
