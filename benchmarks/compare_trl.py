"""rlkit against TRL on the same work, interleaved, one fresh process per run.

    nice -n 10 .venv/bin/python benchmarks/compare_trl.py --workload W1 --repeat 3
    nice -n 10 .venv/bin/python benchmarks/compare_trl.py --workload all --repeat 3 --json out.json

Pairs (rlkit algorithm vs TRL trainer): ppo_clip/PPO, reinforce (leave-one-out, k=4)/RLOO,
dpo/DPO, dpo online/OnlineDPO. Each repeat runs every pair's rlkit and TRL process back to
back, alternating which goes first, so slow drifts of a shared machine's load hit both sides
alike. The figure of each side is the median over repeats; the ratio is rlkit / TRL of those
medians (the median of the per-repeat ratios is printed too). TRL runs in .venv-bench (see
README.md); without it only the rlkit side runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402
from common import (  # noqa: E402
    BENCH_DIR,
    TRL_PYTHON,
    env_with_source,
    export_rlkit,
    load_average,
    median,
    print_result,
)

PAIRS = {"ppo_clip": "ppo", "reinforce": "rloo", "dpo": "dpo", "dpo_online": "online_dpo"}
TRL_NAMES = {"ppo": "PPOTrainer", "rloo": "RLOOTrainer", "dpo": "DPOTrainer",
             "online_dpo": "OnlineDPOTrainer"}


def trl_version() -> str | None:
    if not TRL_PYTHON.exists():
        return None
    proc = subprocess.run([str(TRL_PYTHON), "-c", "import trl; print(trl.__version__)"],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _run(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        path = handle.name
    try:
        proc = subprocess.run([*cmd, "--json", path, "--quiet"], capture_output=True, text=True,
                              env=env)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            return {"error": lines[-1] if lines else f"exit {proc.returncode}",
                    "error_tail": lines[-30:]}
        return json.loads(Path(path).read_text())
    finally:
        Path(path).unlink(missing_ok=True)


def run_rlkit(args: argparse.Namespace, workload: str, algo: str,
              env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH_DIR / "run.py"), "--workload", workload, "--algo", algo,
           *_shared(args), *[x for kv in args.set for x in ("--set", kv)]]
    return _run(cmd, env)


def run_trl(args: argparse.Namespace, workload: str, trainer: str) -> dict[str, Any]:
    cmd = [str(TRL_PYTHON), str(BENCH_DIR / "trl_run.py"), "--workload", workload, "--trainer",
           trainer, "--gradient-checkpointing", args.trl_gradient_checkpointing, *_shared(args)]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return _run(cmd, env)


def _shared(args: argparse.Namespace) -> list[str]:
    return ["--warmup", str(args.warmup), "--steps", str(args.steps), "--threads",
            str(args.threads), "--work-dir", str(args.work_dir)]


def _figure(runs: list[dict[str, Any]], key: str) -> float:
    return median([r[key] for r in runs if "error" not in r and key in r])


def summarize_pair(workload: str, algo: str, trainer: str, rlkit_runs: list[dict[str, Any]],
                   trl_runs: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"workload": workload, "rlkit": algo, "trl": TRL_NAMES[trainer]}
    for side, runs in (("rlkit", rlkit_runs), ("trl", trl_runs)):
        errors = [r["error"] for r in runs if "error" in r]
        row[f"{side}_runs"] = [r.get("episodes_per_s") for r in runs]
        if errors:
            row[f"{side}_errors"] = errors
        for key in ("episodes_per_s", "episodes_per_cpu_s", "tokens_per_s", "peak_memory_mb", "rollout_share",
                    "update_share", "generate_share", "load_s"):
            row[f"{side}_{key}"] = _figure(runs, key)
    if trl_runs:
        row["ratio"] = row["rlkit_episodes_per_s"] / row["trl_episodes_per_s"]
        paired = [a["episodes_per_s"] / b["episodes_per_s"] for a, b in zip(rlkit_runs, trl_runs)
                  if "error" not in a and "error" not in b]
        row["ratio_paired_median"] = median(paired)
        row["ratio_range"] = [min(paired), max(paired)] if paired else None
        row["ratio_cpu"] = row["rlkit_episodes_per_cpu_s"] / row["trl_episodes_per_cpu_s"]
    return row


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "–" if value is None or value != value else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| workload | rlkit | TRL | rlkit eps/s | TRL eps/s | rlkit/TRL | per-repeat "
            "ratios | rlkit/TRL per CPU-s | rlkit tokens/s | peak MB rlkit / TRL | "
            "rlkit rollout / update |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        span = r.get("ratio_range")
        span_text = f"{span[0]:.2f}–{span[1]:.2f}" if span else "–"
        lines.append(
            f"| {r['workload']} | {r['rlkit']} | {r['trl']} | {_fmt(r['rlkit_episodes_per_s'])} | "
            f"{_fmt(r.get('trl_episodes_per_s'))} | **{_fmt(r.get('ratio'), '.2f')}** | "
            f"{span_text} | {_fmt(r.get('ratio_cpu'), '.2f')} | "
            f"{_fmt(r['rlkit_tokens_per_s'])} | {_fmt(r['rlkit_peak_memory_mb'])} / "
            f"{_fmt(r.get('trl_peak_memory_mb'))} | {_fmt(100 * r['rlkit_rollout_share'])}% / "
            f"{_fmt(100 * r['rlkit_update_share'])}% |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="W1", choices=[*sorted(workloads.WORKLOADS), "all"])
    p.add_argument("--algos", default=",".join(PAIRS),
                   help=f"comma-separated rlkit algorithms among {', '.join(PAIRS)}")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads on both sides")
    p.add_argument("--rlkit-rev", default=None, metavar="REV",
                   help="benchmark rlkit as of this commit instead of the work tree")
    p.add_argument("--trl-gradient-checkpointing", default="off", choices=("off", "on"),
                   help="off (default): the same work as rlkit; on: TRL's configs' default")
    p.add_argument("--no-trl", action="store_true", help="rlkit side only")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra rlkit override (repeatable), e.g. train.optimizer_impl=fused")
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--json", default=None, help="write every run and the summary here")
    args = p.parse_args(argv)
    args.work_dir = args.work_dir or workloads.DEFAULT_WORK_DIR
    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.algo_list = [a.strip() for a in args.algos.split(",") if a.strip()]
    unknown = [a for a in args.algo_list if a not in PAIRS]
    if unknown:
        p.error(f"no TRL pair for {unknown}; choose among {', '.join(PAIRS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    version = None if args.no_trl else trl_version()
    if not args.no_trl and version is None:
        print(f"TRL is not importable from {TRL_PYTHON}: running the rlkit side only "
              "(see benchmarks/README.md to create .venv-bench).")
    env = dict(os.environ)
    source_note = "work tree"
    if args.rlkit_rev:
        source, sha = export_rlkit(args.rlkit_rev, args.work_dir)
        env = env_with_source(source)
        source_note = f"commit {sha[:12]}"
    names = sorted(workloads.WORKLOADS) if args.workload == "all" else [args.workload]
    print(f"rlkit ({source_note}) vs TRL {version or '(absent)'} (gradient checkpointing "
          f"{args.trl_gradient_checkpointing}); {args.repeat} repeats x "
          f"({args.warmup} warm-up + {args.steps} timed steps), {args.threads} thread(s); "
          f"load average {load_average()}", flush=True)

    runs: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for repeat in range(args.repeat):
        for name in names:
            workloads.prepare(workloads.get(name), args.work_dir)  # built once, outside timing
            for index, algo in enumerate(args.algo_list):
                trainer = PAIRS[algo]
                slot = runs.setdefault((name, algo), {"rlkit": [], "trl": []})
                first_rlkit = (repeat + index) % 2 == 0
                order = ["rlkit", "trl"] if first_rlkit else ["trl", "rlkit"]
                if version is None:
                    order = ["rlkit"]
                for side in order:
                    result = (run_rlkit(args, name, algo, env) if side == "rlkit"
                              else run_trl(args, name, trainer))
                    result.setdefault("framework", side)
                    result.setdefault("workload", name)
                    result.setdefault("algo", algo if side == "rlkit" else trainer)
                    slot[side].append(result)
                    if "error" in result:
                        print(f"[{repeat + 1}/{args.repeat}] {side} {name} "
                              f"{result['algo']} FAILED: {result['error']}", flush=True)
                    else:
                        print(f"[{repeat + 1}/{args.repeat}] ", end="")
                        print_result(result)
                        sys.stdout.flush()

    rows = [summarize_pair(name, algo, PAIRS[algo], slot["rlkit"], slot["trl"])
            for (name, algo), slot in runs.items()]
    print()
    print(table(rows))
    print(f"\nload average at the end {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"trl": version, "rlkit": source_note,
             "trl_gradient_checkpointing": args.trl_gradient_checkpointing, "rows": rows,
             "runs": {f"{w}/{a}": slot for (w, a), slot in runs.items()}}, indent=1) + "\n")
    failed = any("rlkit_errors" in r or "trl_errors" in r for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
