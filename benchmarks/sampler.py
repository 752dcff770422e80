"""rlkit's sampler against Hugging Face ``generate`` on a workload's policy and prompts.

Both sample the workload's batch of prompts to exactly L new tokens (``min_new_tokens`` =
``max_new_tokens`` = L, temperature 1, no top-k/top-p, KV cache on), one process, the same
torch threads; the first ``--warmup`` calls are discarded (they include any compilation),
then ``--calls`` calls are timed, alternating the two samplers call by call so that a change of
load hits both. Prints new tokens per second, median over the timed calls.

    .venv/bin/python benchmarks/sampler.py --workload W2
    .venv/bin/python benchmarks/sampler.py --workload W2 --variants all

``--variants`` adds decode loops that rlkit does not ship, timed in the same alternation, to
show why: ``growing`` (rlkit's loop with transformers' own growing DynamicCache, i.e. rlkit
before its preallocated cache), ``static`` (transformers' StaticCache: attention always over
the full cache length, under a mask) and ``compiled`` (StaticCache + ``torch.compile`` of the
one-token step; its compilation is in the warm-up calls and reported apart).
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
    parser.add_argument("--variants", default="", help="comma-separated among growing, "
                        "static, compiled, math (rlkit's loop with SDPA's math kernel), or all")
    parser.add_argument("--batch", type=int, default=0, help="prompts per call (0: workload's)")
    parser.add_argument("--profile", default=None, metavar="VARIANT",
                        help="print torch.profiler's op table for 3 calls of this variant "
                        "(rlkit, hf_generate or one of --variants) after the timing")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    quiet_environment()
    set_threads(args.threads)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import rlkit.rollout as rollout
    from rlkit.rollout import position_ids_from_mask, sample

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

    def growing_call(seed: int) -> int:
        real = rollout.preallocated_cache
        rollout.preallocated_cache = lambda model, capacity: None  # type: ignore[assignment]
        try:
            return rlkit_call(seed)
        finally:
            rollout.preallocated_cache = real

    def math_call(seed: int) -> int:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.MATH]):
            return rlkit_call(seed)

    compiled_step = None

    @torch.inference_mode()
    def static_call(seed: int, compiled: bool = False) -> int:
        nonlocal compiled_step
        from transformers import StaticCache

        step = model.forward
        if compiled:
            if compiled_step is None:
                compiled_step = torch.compile(model.forward, dynamic=False)
            step = compiled_step
        gen = torch.Generator().manual_seed(seed)
        n, P = enc.input_ids.shape
        cache = StaticCache(config=model.config, max_cache_len=P + L)
        mask = torch.zeros(n, P + L, dtype=torch.long)
        mask[:, :P] = enc.attention_mask
        pos = position_ids_from_mask(enc.attention_mask)
        out = model(input_ids=enc.input_ids, attention_mask=mask, position_ids=pos,
                    past_key_values=cache, cache_position=torch.arange(P), use_cache=True)
        logits, nxt = out.logits[:, -1, :], pos[:, -1:] + 1
        for s in range(L):
            probs = logits.float().softmax(-1)
            token = (probs / torch.empty_like(probs).exponential_(1, generator=gen)).argmax(-1)
            if s == L - 1:
                break
            mask[:, P + s] = 1
            out = step(input_ids=token.unsqueeze(1), attention_mask=mask, position_ids=nxt,
                       past_key_values=cache, cache_position=torch.tensor([P + s]),
                       use_cache=True)
            logits, nxt = out.logits[:, -1, :], nxt + 1
        return batch * L

    calls = {"rlkit": rlkit_call, "hf_generate": hf_call, "growing": growing_call,
             "static": static_call, "compiled": lambda seed: static_call(seed, True), "math": math_call}
    wanted = ["growing", "static", "compiled", "math"] if args.variants == "all" else [
        v for v in args.variants.split(",") if v]
    names = ["rlkit", "hf_generate", *wanted]
    times: dict[str, list[float]] = {name: [] for name in names}
    first_call_s: dict[str, float] = {}
    for i in range(args.warmup + args.calls):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter()
            tokens = calls[name](i)
            wall = time.perf_counter() - start
            if i == 0:
                first_call_s[name] = wall
            if i >= args.warmup:
                times[name].append(tokens / wall)
    result = {
        "workload": args.workload, "threads": args.threads, "batch": batch, "new_tokens": L,
        "load_average": load_average(), "torch": torch.__version__,
        "tokens_per_s": {name: statistics.median(v) for name, v in times.items()},
        "first_call_s": first_call_s,
    }
    tps = result["tokens_per_s"]
    result["ratio"] = tps["rlkit"] / tps["hf_generate"]
    print(f"{args.workload}: batch {batch} × {L} new tokens, {args.threads} thread(s), median "
          f"of {args.calls} calls (load {result['load_average']})")
    for name in names:
        print(f"  {name:12s} {tps[name]:8.0f} tokens/s  ({tps[name] / tps['hf_generate']:.2f}× "
              f"HF generate; first call {first_call_s[name]:.1f} s)")
    if args.profile:
        from torch.profiler import profile

        with profile() as prof:
            for i in range(3):
                calls[args.profile](100 + i)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        print(f"torch.profiler, 3 calls of {args.profile}:\n{table}")
        result["profile"] = {args.profile: table}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
