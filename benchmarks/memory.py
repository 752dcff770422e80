"""Peak memory of one ppo_clip step on a GPT-2-small-sized policy (124M parameters, built from
config), full weights vs LoRA, with and without gradient checkpointing — CPU, fp32.

Each configuration runs in its own fresh process, and its peak is that process's resident
high-water mark (VmHWM in /proc/self/status), so nothing one configuration allocated is
counted in another. A baseline process (imports, tokenizer, nothing else) is measured the same
way; "run" is the peak minus that baseline.

    python benchmarks/memory.py            # the table (about 5–10 minutes on one core)
    python benchmarks/memory.py --steps 2  # more steps (the peak is reached in step 1)

The workload: the toy task's prompts, 16 prompts per step, 48 new tokens each (EOS is held off
until then), one epoch of one minibatch (so the whole batch's activations are alive at once,
the case gradient checkpointing is for), AdamW. GPT-2 small: 12 layers, width 768, 12 heads,
a word-level vocabulary of 50,257 tokens (+ the special tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VOCAB = 50257
CASES: dict[str, dict[str, Any]] = {
    "full": {},
    "full + checkpointing": {"train.gradient_checkpointing": True},
    "LoRA r=16 (c_attn), shared critic": {"policy.lora": {"r": 16, "alpha": 32},
                                          "critic.shared": True},
    "LoRA + checkpointing": {"policy.lora": {"r": 16, "alpha": 32}, "critic.shared": True,
                             "train.gradient_checkpointing": True},
}


def vm_hwm_mb() -> float:
    """This process's resident high-water mark (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def tokenizer_dir(root: Path) -> Path:
    """A word-level tokenizer with GPT-2's vocabulary size: the toy task's words + fillers."""
    from rlkit.tasks.toy import WORDS
    from rlkit.training import build_word_tokenizer

    words = list(WORDS) + [f"w{i}" for i in range(VOCAB)]
    tok = build_word_tokenizer(words[:VOCAB])
    path = root / "tokenizer"
    tok.save_pretrained(path)
    return path


def config(tokenizer: Path, out: Path, case: dict[str, Any], steps: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "memory", "seed": 0, "out": str(out),
        "task": {"name": "toy"}, "reward": {"model": "count_good"},
        "policy": {"config": {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 128},
                   "tokenizer": str(tokenizer)},
        "algorithm": {"name": "ppo_clip", "lr": 1e-5, "epochs": 1, "num_minibatches": 1},
        "rollout": {"batch_size": 16, "max_new_tokens": 48, "min_new_tokens": 48},
        "train": {"steps": steps, "threads": 1, "device": "cpu"},
        "eval": {"every": 0, "num_prompts": 2, "max_new_tokens": 2},
        "checkpoint": {"every": 0},
        "tracking": {"trackers": ["jsonl"]},
    }
    for key, value in case.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return data


def one(name: str, tokenizer: Path, steps: int) -> dict[str, Any]:
    """Run one case in this process; its figures."""
    import torch

    torch.set_num_threads(1)
    if name == "baseline":
        import transformers  # noqa: F401

        from rlkit.core.run import Run  # noqa: F401 - the imports a run pays for

        return {"vm_hwm_mb": vm_hwm_mb()}
    from rlkit.config import load_config
    from rlkit.core.run import Run

    with tempfile.TemporaryDirectory() as out:
        run = Run(load_config(data=config(tokenizer, Path(out), CASES[name], steps)))
        trainable = sum(p.numel() for p in run.optimizer.param_groups[0]["params"])
        trainable += sum(p.numel() for g in run.optimizer.param_groups[1:] for p in g["params"])
        start = time.perf_counter()
        row = run.train()
        return {"vm_hwm_mb": vm_hwm_mb(), "peak_memory_mb": row["perf/peak_memory_mb"],
                "policy_params": sum(p.numel() for p in run.policy.parameters()),
                "trainable_params": trainable, "step_s": (time.perf_counter() - start) / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, Path(args.tokenizer), args.steps)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "WANDB_MODE": "disabled"}
    with tempfile.TemporaryDirectory() as root:
        tok = tokenizer_dir(Path(root))
        results = {}
        for name in ["baseline", *CASES]:
            done = subprocess.run([sys.executable, __file__, "--one", name, "--tokenizer",
                                   str(tok), "--steps", str(args.steps)],
                                  capture_output=True, text=True, env=env)
            if done.returncode:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name}: {results[name]}", file=sys.stderr)
    base = results["baseline"]["vm_hwm_mb"]
    full = results["full"]["vm_hwm_mb"] - base
    print(f"GPT-2-small-sized policy ({results['full']['policy_params'] / 1e6:.1f}M parameters), "
          f"ppo_clip, CPU fp32, 16 prompts x 48 new tokens, 1 step; baseline process "
          f"(imports) {base:.0f} MiB\n")
    print("| configuration | trained parameters | peak RSS (MiB) | run (peak − baseline) | vs full "
          "| s/step |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in CASES:
        r = results[name]
        run_mb = r["vm_hwm_mb"] - base
        print(f"| {name} | {r['trainable_params'] / 1e6:.2f}M | {r['vm_hwm_mb']:.0f} | "
              f"{run_mb:.0f} | {run_mb / full:.0%} | {r['step_s']:.0f} |")


if __name__ == "__main__":
    main()
