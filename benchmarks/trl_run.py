"""Time TRL's trainers on the same workloads (run with the TRL virtualenv, .venv-bench).

    .venv-bench/bin/python benchmarks/trl_run.py --workload W1 --trainer ppo

Trainers and the rlkit algorithm each is set against (same batch, same number of sequences
and optimizer steps per step, same models, same lr, reference model on, fp32, CPU):

    ppo         trl.experimental.ppo.PPOTrainer        ppo_clip (4 epochs x 4 minibatches)
    rloo        trl.RLOOTrainer (k=4)                  reinforce, leave-one-out baseline, k=4
    dpo         trl.DPOTrainer                         dpo (offline pairs)
    online_dpo  trl.experimental.online_dpo.OnlineDPOTrainer  dpo with algorithm.mode=online

Gradient checkpointing, on by default in TRL's configs, is switched off (rlkit recomputes
nothing; ``--gradient-checkpointing on`` measures TRL's default). ``gc.collect`` is replaced
by a no-op in this process before TRL is imported: TRL's PPO loop calls it twice per step,
which on CPU costs more than the tiny models' work and is not what the comparison is about. Every completion is exactly L tokens: PPO runs without a stop token (it
never truncates), RLOO and online DPO get ``min_new_tokens = L``, DPO's pairs are L-1 words +
the EOS it appends. A step's wall time runs from one ``on_step_end`` callback to the next.
"""

from __future__ import annotations

import gc

gc.collect = lambda *args, **kwargs: 0  # noqa: E731  (neutralised before anything imports TRL)

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402
from common import (  # noqa: E402
    load_average,
    peak_rss_mb,
    print_result,
    quiet_environment,
    set_threads,
    summarize,
    write_result,
)

TRAINERS = ("ppo", "rloo", "dpo", "online_dpo")
RLKIT_EQUIVALENT = {"ppo": "ppo_clip", "rloo": "reinforce", "dpo": "dpo",
                    "online_dpo": "dpo_online"}
RLOO_K = 4
PPO_EPOCHS, PPO_MINIBATCHES = 4, 4  # rlkit ppo_clip's defaults
KL_COEF = {"ppo": 0.05, "rloo": 0.05, "dpo": 0.1, "online_dpo": 0.1}  # rlkit's defaults


def _read_prompts(path: Path) -> list[str]:
    return [json.loads(line)["prompt"] for line in path.read_text().splitlines() if line.strip()]


class StepTimer:
    """A TrainerCallback stamping the end of every optimizer step and keeping the logs."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                timer.stamps = [time.perf_counter()]
                timer.cpu_stamps = [time.process_time()]

            def on_step_end(self, args, state, control, **kwargs):
                timer.stamps.append(time.perf_counter())
                timer.cpu_stamps.append(time.process_time())

            def on_log(self, args, state, control, logs=None, **kwargs):
                timer.logs.append(dict(logs or {}))

        self.callback = Callback()
        self.stamps: list[float] = []
        self.cpu_stamps: list[float] = []
        self.logs: list[dict[str, Any]] = []


def time_generate(model: Any) -> list[float]:
    """Wrap ``model.generate`` to add up the time spent sampling."""
    spent: list[float] = []
    original = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t)

    model.generate = generate
    return spent


def common_args(workload: workloads.Workload, out: Path, total: int,
                checkpointing: bool) -> dict[str, Any]:
    return {
        # TRL's configs default to gradient checkpointing (recompute activations in backward;
        # online DPO then also samples without a KV cache); rlkit does neither: off = same work
        "gradient_checkpointing": checkpointing,
        "output_dir": str(out), "learning_rate": workload.lr, "seed": 0, "use_cpu": True,
        "report_to": "none", "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True,
        "dataloader_num_workers": 0, "bf16": False, "fp16": False, "max_steps": total,
        "lr_scheduler_type": "constant",
    }


def build_trainer(name: str, workload: workloads.Workload, art: workloads.Artifacts, out: Path,
                  total: int, timer: StepTimer, checkpointing: bool = False,
                  ) -> tuple[Any, Any, int]:
    """The trainer, its policy, and the sequences it trains on per step."""
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    B, L, P = workload.batch, workload.response_len, workload.prompt_len
    tokenizer = AutoTokenizer.from_pretrained(art.policy)
    policy = AutoModelForCausalLM.from_pretrained(art.policy)
    ref = AutoModelForCausalLM.from_pretrained(art.policy)
    # TRL joins prompt and completion as text: a trailing space keeps the words apart
    prompts = [p + " " for p in _read_prompts(art.prompts_train)]
    base = common_args(workload, out, total, checkpointing)

    if name == "ppo":
        from trl.experimental.ppo import PPOConfig, PPOTrainer

        base.pop("max_steps")
        reward = AutoModelForSequenceClassification.from_pretrained(art.reward, num_labels=1)
        value = AutoModelForSequenceClassification.from_pretrained(art.reward, num_labels=1)
        ids = [tokenizer(p)["input_ids"] for p in prompts]
        assert {len(i) for i in ids} == {P}
        dataset = Dataset.from_dict({"input_ids": ids})
        args = PPOConfig(
            **base, per_device_train_batch_size=B, gradient_accumulation_steps=1,
            num_mini_batches=PPO_MINIBATCHES, num_ppo_epochs=PPO_EPOCHS, total_episodes=B * total,
            response_length=L, temperature=1.0, local_rollout_forward_batch_size=B,
            num_sample_generations=0, stop_token=None, kl_coef=KL_COEF[name],
            per_device_eval_batch_size=B,
        )
        trainer = PPOTrainer(
            args=args, processing_class=tokenizer, model=policy, ref_model=ref,
            reward_model=reward, value_model=value, train_dataset=dataset,
            eval_dataset=dataset.select(range(B)), callbacks=[timer.callback],
        )
        return trainer, policy, B

    if name == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        reward = AutoModelForSequenceClassification.from_pretrained(art.reward, num_labels=1)
        args = RLOOConfig(
            **base, per_device_train_batch_size=B * RLOO_K, gradient_accumulation_steps=1,
            num_generations=RLOO_K, max_completion_length=L, temperature=1.0,
            generation_kwargs={"min_new_tokens": L}, beta=KL_COEF[name], num_iterations=1,
        )
        trainer = RLOOTrainer(
            model=policy, reward_funcs=reward, args=args,
            train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tokenizer,
            reward_processing_classes=tokenizer, callbacks=[timer.callback],
        )
        return trainer, policy, B * RLOO_K

    if name == "dpo":
        from trl import DPOConfig, DPOTrainer

        rows = [json.loads(line) for line in art.preferences.read_text().splitlines() if line]
        dataset = Dataset.from_dict({
            "prompt": [r["prompt"] + " " for r in rows], "chosen": [r["chosen"] for r in rows],
            "rejected": [r["rejected"] for r in rows]})
        args = DPOConfig(
            **base, per_device_train_batch_size=B, gradient_accumulation_steps=1,
            max_length=P + L, beta=KL_COEF[name], precompute_ref_log_probs=False,
        )
        trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=dataset,
                             processing_class=tokenizer, callbacks=[timer.callback])
        tokenized = trainer.train_dataset
        lengths = ({len(x) for x in tokenized["prompt_ids"]},
                   {len(x) for x in tokenized["chosen_ids"]} | {len(x) for x in
                                                                tokenized["rejected_ids"]})
        assert lengths == ({P}, {L}), f"DPO prompt/completion lengths {lengths}, expected {P}/{L}"
        return trainer, policy, 2 * B

    if name == "online_dpo":
        from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

        reward = AutoModelForSequenceClassification.from_pretrained(art.reward, num_labels=1)
        args = OnlineDPOConfig(
            **base, per_device_train_batch_size=B, gradient_accumulation_steps=1,
            max_new_tokens=L, max_length=P + L, temperature=1.0,
            generation_kwargs={"min_new_tokens": L}, beta=[KL_COEF[name]],
        )
        trainer = OnlineDPOTrainer(
            model=policy, ref_model=ref, reward_funcs=reward, args=args,
            train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tokenizer,
            reward_processing_classes=tokenizer, callbacks=[timer.callback],
        )
        return trainer, policy, 2 * B

    raise SystemExit(f"unknown trainer {name!r}; known: {', '.join(TRAINERS)}")


def check_lengths(name: str, logs: list[dict[str, Any]], L: int) -> str:
    """Every completion exactly L tokens, from what each trainer logs."""
    if name == "rloo":
        values = {(log["completions/min_length"], log["completions/max_length"])
                  for log in logs if "completions/min_length" in log}
        assert values == {(float(L), float(L))}, f"RLOO completion lengths {values}, expected {L}"
        return f"completions/min_length == max_length == {L}"
    if name == "online_dpo":
        eos = {log["val/contain_eos_token"] for log in logs if "val/contain_eos_token" in log}
        assert eos == {0.0}, f"online DPO completions with an EOS: {eos}"
        return f"val/contain_eos_token == 0 with max_new_tokens = min_new_tokens = {L}"
    if name == "ppo":
        return f"no stop token: PPO scores all response_length = {L} tokens"
    return f"chosen_ids and rejected_ids: {L} tokens each (EOS included)"


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    quiet_environment()
    set_threads(args.threads)
    workload = workloads.get(args.workload)
    art = workloads.prepare(workload, args.work_dir)
    total = args.warmup + args.steps
    import torch
    import transformers
    import trl
    from transformers import PrinterCallback

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    out = Path(tempfile.mkdtemp(prefix="trl-run-", dir=args.work_dir))
    timer = StepTimer()
    try:
        t0 = time.perf_counter()
        trainer, policy, per_step = build_trainer(args.trainer, workload, art, out, total, timer,
                                                  args.gradient_checkpointing == "on")
        trainer.remove_callback(PrinterCallback)  # no per-step printing of the logs
        generate_s = time_generate(policy)
        t1 = time.perf_counter()
        trainer.train()
        t2 = time.perf_counter()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if len(timer.stamps) != total + 1:
        raise SystemExit(f"expected {total} steps, the callback saw {len(timer.stamps) - 1}")
    timed = range(args.warmup + 1, total + 1)
    wall = [timer.stamps[i] - timer.stamps[i - 1] for i in timed]
    cpu = [timer.cpu_stamps[i] - timer.cpu_stamps[i - 1] for i in timed]
    episodes = [float(per_step)] * args.steps
    tokens = [float(per_step * workload.response_len)] * args.steps
    length_check = check_lengths(args.trainer, timer.logs, workload.response_len)
    result: dict[str, Any] = {
        "framework": "trl", "workload": workload.name, "algo": args.trainer,
        "rlkit_algo": RLKIT_EQUIVALENT[args.trainer], "threads": args.threads,
        "warmup": args.warmup, "steps": args.steps, "episodes_per_step": float(per_step),
        "tokens_per_step": float(per_step * workload.response_len), "step_wall_s": wall,
        **summarize(wall, episodes, tokens, cpu),
        "peak_memory_mb": peak_rss_mb(), "load_s": t1 - t0, "train_s": t2 - t1,
        "gc_collect": "no-op", "gradient_checkpointing": bool(policy.is_gradient_checkpointing),
        "length_check": length_check, "loadavg": load_average(),
        # transformers' default for torch >= 2.8 is the fused AdamW kernel
        "optimizer": _optimizer_name(trainer),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "trl": trl.__version__},
    }
    if generate_s:  # generation calls of the timed steps (one per step for these trainers)
        spent = generate_s[-args.steps:] if len(generate_s) >= total else []
        if spent:
            result["generate_share"] = sum(spent) / sum(wall)
    return result


def _optimizer_name(trainer: Any) -> str:
    """e.g. "AdamW fused": what the trainer stepped with (accelerate's wrapper unwrapped)."""
    opt = getattr(trainer, "optimizer", None)
    opt = getattr(opt, "optimizer", opt)
    if opt is None:
        return "unknown"
    groups = getattr(opt, "param_groups", [])
    impl = ("fused" if any(g.get("fused") for g in groups)
            else "foreach" if any(g.get("foreach") for g in groups) else "for_loop")
    return f"{type(opt).__name__} {impl}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="W1", choices=sorted(workloads.WORKLOADS))
    p.add_argument("--trainer", default="ppo", choices=TRAINERS)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gradient-checkpointing", default="off", choices=("off", "on"),
                   help="off (default): the same work as rlkit; on: TRL's own default")
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.work_dir = args.work_dir or workloads.DEFAULT_WORK_DIR
    args.work_dir.mkdir(parents=True, exist_ok=True)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run_one(args)
    write_result(result, args.json)
    if not args.quiet:
        print_result(result)
        print(f"      load {result['load_s']:.1f} s, train {result['train_s']:.1f} s, "
              f"{result['length_check']}, load average {result['loadavg']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
