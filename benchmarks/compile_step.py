"""``torch.compile`` on a training minibatch: is the fusion worth its compilation on CPU?

One policy minibatch as rlkit's update runs it (the scoring forward of
``rlkit.rollout.forward_response``, a loss on the response log-probs, backward, AdamW step),
on a workload's policy and minibatch shape (batch / 4 sequences of prompt + L tokens, as
ppo_clip's 4 minibatches), eager and then ``torch.compile(model)``; prints the first call
(compilation included) and the median of the timed calls.

    .venv/bin/python benchmarks/compile_step.py --workload W1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_average, quiet_environment, set_threads  # noqa: E402
from workloads import get, prepare  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="W1", choices=["W1", "W2"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    quiet_environment()
    set_threads(args.threads)

    import torch
    from transformers import AutoModelForCausalLM

    from rlkit.rollout import forward_response

    workload = get(args.workload)
    art = prepare(workload)
    model = AutoModelForCausalLM.from_pretrained(art.policy)
    rows = max(1, workload.batch // 4)
    T = workload.prompt_len + workload.response_len
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, workload.vocab, (rows, T), generator=gen)
    mask = torch.ones(rows, T, dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step(m: torch.nn.Module) -> None:
        logprobs, _ = forward_response(m, ids, mask, workload.prompt_len, 1.0,
                                       with_entropy=False)
        (-logprobs.mean()).backward()
        opt.step()
        opt.zero_grad()

    result: dict = {"workload": args.workload, "threads": args.threads, "rows": rows,
                    "tokens": T, "load_average": load_average(), "torch": torch.__version__}
    for name, m in (("eager", model), ("compiled", torch.compile(model, dynamic=False))):
        start = time.perf_counter()
        step(m)
        first = time.perf_counter() - start
        for _ in range(3):
            step(m)
        walls = []
        for _ in range(args.calls):
            start = time.perf_counter()
            step(m)
            walls.append(time.perf_counter() - start)
        result[name] = {"first_call_s": first, "median_ms": 1e3 * statistics.median(walls)}
        print(f"{args.workload} {name:8s}: first call {first:5.1f} s, then "
              f"{result[name]['median_ms']:.2f} ms per minibatch ({rows} × {T} tokens)")
    saved = result["eager"]["median_ms"] - result["compiled"]["median_ms"]
    if saved > 0:
        result["break_even_minibatches"] = 1e3 * result["compiled"]["first_call_s"] / saved
        print(f"compilation pays for itself after {result['break_even_minibatches']:.0f} "
              f"minibatches")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
