"""rlkit's sampler against Hugging Face ``generate`` on a workload's policy and prompts.

Both sample the workload's batch of prompts to exactly L new tokens (``min_new_tokens`` =
``max_new_tokens`` = L, temperature 1, no top-k/top-p, KV cache on), one process, the same
torch threads; the first ``--warmup`` calls are discarded (they include any compilation),
then ``--calls`` calls are timed, alternating the two samplers call by call so that a change of
load hits both. Prints new tokens per second, median over the timed calls.

    .venv/bin/python benchmarks/sampler.py --workload W2
    .venv/bin/python benchmarks/sampler.py --workload W2 --decode compiled   # rollout.decode
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_average, quiet_environment, set_threads  # noqa: E402
from workloads import get, prepare  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="W2", choices=["W1", "W2"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--decode", default="eager", help="rlkit's rollout.decode")
    parser.add_argument("--batch", type=int, default=0, help="prompts per call (0: workload's)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    quiet_environment()
    set_threads(args.threads)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlkit.rollout import sample

    workload = get(args.workload)
    art = prepare(workload)
    tokenizer = AutoTokenizer.from_pretrained(art.tokenizer)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(art.policy).eval()
    batch = args.batch or workload.batch
    prompts = [json.loads(line)["prompt"] for line in art.prompts_train.read_text().splitlines()]
    enc = tokenizer(prompts[:batch], return_tensors="pt", padding=True)
    L = workload.response_len
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id

    def rlkit_call(seed: int) -> int:
        gen = torch.Generator().manual_seed(seed)
        out = sample(model, enc.input_ids, enc.attention_mask, max_new_tokens=L, eos_id=eos,
                     pad_id=pad, min_new_tokens=L, generator=gen)
        assert int(out.response_mask.sum()) == batch * L
        return batch * L

    def hf_call(seed: int) -> int:
        torch.manual_seed(seed)
        out = model.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                             do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=L, min_new_tokens=L, pad_token_id=pad,
                             eos_token_id=eos, use_cache=True)
        assert out.shape[1] - enc.input_ids.shape[1] == L
        return batch * L

    times: dict[str, list[float]] = {"rlkit": [], "hf_generate": []}
    calls = {"rlkit": rlkit_call, "hf_generate": hf_call}
    for i in range(args.warmup + args.calls):
        order = ["rlkit", "hf_generate"] if i % 2 == 0 else ["hf_generate", "rlkit"]
        for name in order:
            start = time.perf_counter()
            tokens = calls[name](i)
            wall = time.perf_counter() - start
            if i >= args.warmup:
                times[name].append(tokens / wall)
    result = {
        "workload": args.workload, "threads": args.threads, "decode": args.decode,
        "batch": batch, "new_tokens": L, "load_average": load_average(),
        "rlkit_tokens_per_s": statistics.median(times["rlkit"]),
        "hf_generate_tokens_per_s": statistics.median(times["hf_generate"]),
        "torch": torch.__version__,
    }
    result["ratio"] = result["rlkit_tokens_per_s"] / result["hf_generate_tokens_per_s"]
    print(f"{args.workload} batch {batch} × {L} new tokens, {args.threads} thread(s), decode="
          f"{args.decode}: rlkit {result['rlkit_tokens_per_s']:.0f} tokens/s, HF generate "
          f"{result['hf_generate_tokens_per_s']:.0f} tokens/s, ratio {result['ratio']:.2f} "
          f"(load {result['load_average']})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
