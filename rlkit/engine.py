"""One run: sample → score → experience → algorithm.prepare → update loop → metrics.

The engine owns every measurement a comparison rests on, so algorithms differ in nothing but
their plugin: prompts and their order, decoding, log-probs at the sampling temperature,
reference log-probs, per-token KL, values, masks, the optimizer step, clipping, evaluation
and every canonical metric (see docs/metrics.md).
"""

from __future__ import annotations

import json
import math
import random
import resource
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from rlkit import metrics as M
from rlkit.algorithm import Experience, PolicyOutput
from rlkit.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from rlkit.config import RunConfig, algorithm_config, dump_config
from rlkit.data import first_words, load_preference_jsonl, read_dataset_prompts, read_prompts
from rlkit.errors import ConfigError, DataError
from rlkit.models import build_critic, frozen_copy, load_policy, resolve_device
from rlkit.ops import explained_variance, kl_penalty, masked_mean
from rlkit.plugins import PluginManager, get_plugin_manager
from rlkit.rollout import Samples, forward_response, forward_values, sample
from rlkit.scoring import FunctionReward, ModelReward
from rlkit.tracking.base import RunInfo

hf_logging.disable_progress_bar()  # per-load progress bars drown the run's own progress


def stream_seed(seed: int, step: int, stream: int) -> int:
    """Independent, reproducible seeds per (run seed, step, purpose): a resumed run redraws
    exactly what the uninterrupted run drew, and every algorithm sees the same prompts."""
    return (seed * 1_000_003 + step * 7919 + stream * 104_729) % (2**62)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Run:
    """A single training run; ``Run(config).train()`` does everything."""

    def __init__(
        self, config: RunConfig, *, out: str | Path | None = None, resume: bool = False,
        pm: PluginManager | None = None,
    ) -> None:
        self.config = config
        self.pm = pm or get_plugin_manager()
        self.run_dir = Path(out if out is not None else config.out) / config.name
        self.resume = resume
        self.step = 0
        self.samples_seen = 0
        self.tokens_seen = 0
        self.wall_offset = 0.0
        self._setup()

    # ---------------------------------------------------------------------------------------
    # setup
    # ---------------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.config
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        # Saturated softmaxes produce subnormal floats, which are ~100× slower on x86 CPUs.
        torch.set_flush_denormal(True)
        self.device = resolve_device(cfg.train.device)
        self.task = None
        if cfg.task.name is not None:
            self.task = self.pm.task(cfg.task.name)(cfg.task.options)
        self.train_prompts, self.eval_prompts = self._load_prompts()

        self.algorithm_class = self.pm.algorithm(cfg.algorithm_name)
        self.algo_config = algorithm_config(cfg, self.pm.registry.algorithms)
        self.algorithm = self.algorithm_class(self.algo_config)
        self.total_steps = self.algorithm.total_steps = self._total_steps()

        self.policy, self.tokenizer = load_policy(cfg, self.task, self.pm.hook)
        self.policy.to(self.device)
        self.reference = frozen_copy(self.policy)
        self.scorer = self._load_reward()
        self.critic = None
        if self.algorithm.needs_critic:
            self.critic = build_critic(
                self.algorithm.critic_init, self.policy, self.tokenizer,
                getattr(self.scorer, "model", None), getattr(self.scorer, "tokenizer", None),
            ).to(self.device)
        self.preferences = None
        if self.algorithm.data_source() == "preferences":
            self.preferences = self._load_preferences()

        self.algorithm.setup(self)
        self.optimizer = self._make_optimizer()
        steps_per_update = self.algo_config.epochs * self.algo_config.num_minibatches
        self.total_optimizer_steps = self.total_steps * steps_per_update
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda)
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if cfg.train.bf16 and self.device.type == "cuda" else nullcontext()
        )

    def _total_steps(self) -> int:
        """``train.samples`` (a budget in responses, equal across algorithms) or ``train.steps``."""
        budget = self.config.train.samples
        if budget is None:
            return self.config.train.steps
        pairs = self.algorithm.data_source() == "preferences"
        per_prompt = 2 if pairs else self.algo_config.samples_per_prompt
        per_step = self.config.rollout.batch_size * per_prompt
        return max(1, math.ceil(budget / per_step))

    def _load_prompts(self) -> tuple[list[str], list[str]]:
        cfg = self.config
        pc = cfg.prompts
        if pc.dataset is not None:
            train = read_dataset_prompts(pc.dataset, pc.split, pc.field, pc.limit)
            held_out = (read_dataset_prompts(pc.dataset, pc.eval_split, pc.field, pc.limit)
                        if pc.eval_split else train)
            return first_words(train, pc.max_words), first_words(held_out, pc.max_words)
        if cfg.prompts.train is not None:
            train = read_prompts(cfg.prompts.train, cfg.prompts.field)
            if cfg.prompts.eval is not None:
                held_out = read_prompts(cfg.prompts.eval, cfg.prompts.field)
            else:  # a fixed split (independent of the run seed: every run evaluates alike)
                order = list(range(len(train)))
                random.Random(0).shuffle(order)
                n_eval = max(1, int(len(train) * cfg.prompts.eval_fraction)) if len(train) > 1 else 0
                held_out = [train[i] for i in order[:n_eval]] or list(train)
                train = [train[i] for i in order[n_eval:]] or list(train)
            return train, held_out
        if self.task is None:
            raise ConfigError(
                "No prompts: set task.name to a registered task (e.g. 'reviews') or "
                "prompts.train to a JSONL/CSV file."
            )
        train, held_out = self.task.prompts("train"), self.task.prompts("eval")
        if not train:
            raise DataError(f"Task '{self.task.name}' produced an empty training prompt set.")
        return train, held_out or train

    def _load_reward(self) -> Any:
        spec = self.config.reward.model
        if spec == "task":
            spec = self.task.reward() if self.task is not None else None
            if spec is None:
                raise ConfigError(
                    "reward.model is 'task' but no task provides a reward: set reward.model to a "
                    f"registered reward function ({', '.join(sorted(self.pm.registry.rewards))}) "
                    "or a sequence-classification model directory / hub id."
                )
        if spec in self.pm.registry.rewards:
            return FunctionReward(spec, self.pm.registry.rewards[spec])
        loaded = self.pm.hook.rlkit_load_model(spec=spec, role="reward", run_config=self.config)
        if loaded is None:
            raise ConfigError(f"No plugin could load the reward model '{spec}'.")
        model, tokenizer = loaded
        return ModelReward(model, tokenizer, self.config.reward.batch_size, self.device,
                           self.config.reward.label)

    def _load_preferences(self) -> list[dict[str, str]]:
        path = self.config.preferences
        if path is None and self.task is not None:
            path = self.task.preferences()
        if path is None:
            raise ConfigError(
                f"Algorithm '{self.config.algorithm_name}' trains on preference pairs: set "
                "'preferences' to a JSONL with prompt, chosen, rejected (or use a task that "
                "provides pairs, such as 'reviews')."
            )
        return load_preference_jsonl(path)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.algo_config
        groups = [{"params": [p for p in self.policy.parameters() if p.requires_grad], "lr": c.lr}]
        if self.critic is not None:
            groups.append({"params": list(self.critic.parameters()), "lr": c.critic_lr or c.lr})
        return torch.optim.AdamW(groups, lr=c.lr, eps=c.adam_eps, weight_decay=c.weight_decay)

    def _lr_lambda(self, opt_step: int) -> float:
        c = self.algo_config
        if c.warmup_steps and opt_step < c.warmup_steps:
            return (opt_step + 1) / c.warmup_steps
        if c.lr_schedule == "constant":
            return 1.0
        span = max(1, self.total_optimizer_steps - c.warmup_steps)
        progress = min(1.0, (opt_step - c.warmup_steps) / span)
        if c.lr_schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    # ---------------------------------------------------------------------------------------
    # experience
    # ---------------------------------------------------------------------------------------
    def _batch_of(self, items: list[Any], step: int, stream: int) -> list[Any]:
        """Items of training step ``step`` (1-based): consecutive slices of per-epoch
        permutations seeded by the run seed alone — the same for every algorithm."""
        size, n = self.config.rollout.batch_size, len(items)
        perms: dict[int, np.ndarray] = {}  # a step spans at most a few epochs: one draw each
        out = []
        for i in range((step - 1) * size, step * size):
            epoch, pos = divmod(i, n)
            if epoch not in perms:
                rng = np.random.default_rng(stream_seed(self.config.seed, epoch, stream))
                perms[epoch] = rng.permutation(n)
            out.append(items[perms[epoch][pos]])
        return out

    def prompt_batch(self, step: int) -> list[str]:
        return self._batch_of(self.train_prompts, step, stream=1)

    def generate(self, prompts: list[str], k: int, seed: int, temperature: float,
                 max_new_tokens: int) -> tuple[Samples, torch.Tensor]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True)
        ids = enc["input_ids"].repeat_interleave(k, 0).to(self.device)
        mask = enc["attention_mask"].repeat_interleave(k, 0).to(self.device)
        group_ids = torch.arange(len(prompts)).repeat_interleave(k)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        rollout = self.config.rollout
        self.policy.eval()
        with self.autocast:
            samples = sample(
                self.policy, ids, mask, max_new_tokens=max_new_tokens,
                eos_id=self.tokenizer.eos_token_id, pad_id=self.tokenizer.pad_token_id,
                temperature=temperature, top_k=rollout.top_k, top_p=rollout.top_p,
                generator=generator,
            )
        return samples, group_ids

    @torch.inference_mode()
    def score_samples(self, samples: Samples, prompts: list[str], temperature: float,
                      with_values: bool) -> tuple[Experience, dict[str, Any]]:
        """One batched pass per model: old log-probs, reference log-probs, values, rewards."""
        ids, attn, plen, mask = (samples.input_ids, samples.attention_mask, samples.prompt_len,
                                 samples.response_mask)
        with self.autocast:
            logprobs, entropy = forward_response(self.policy, ids, attn, plen, temperature)
            ref_logprobs, _ = forward_response(self.reference, ids, attn, plen, temperature,
                                               with_entropy=False)
            values = (forward_values(self.critic, ids, attn, plen) * mask
                      if with_values and self.critic is not None else None)
        logprobs, ref_logprobs = logprobs * mask, ref_logprobs * mask
        kl = kl_penalty(logprobs, ref_logprobs, self.config.kl.estimator) * mask
        responses = self.tokenizer.batch_decode(ids[:, plen:], skip_special_tokens=True)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        raw = self.scorer(prompts, responses, texts).to(self.device)
        scores = raw.clone()
        penalty = self.config.rollout.missing_eos_penalty
        if penalty is not None:
            scores = scores - penalty * (~samples.ended).float()
        gold = self.task.gold_reward(prompts, responses) if self.task is not None else None
        exp = Experience(
            input_ids=ids, attention_mask=attn, prompt_len=plen, response_mask=mask,
            logprobs=logprobs, ref_logprobs=ref_logprobs, kl=kl, scores=scores,
            group_ids=torch.zeros(len(ids), dtype=torch.long), values=values,
        )
        info = {"raw_scores": raw, "gold": gold, "entropy": entropy * mask,
                "responses": responses, "ended": samples.ended}
        return exp, info

    def preference_batch(self, step: int) -> tuple[Experience, dict[str, Any]]:
        """B preference pairs as 2B sequences; each pair is a group, scores 1 (chosen) / 0."""
        size = self.config.rollout.batch_size
        rows = self._batch_of(self.preferences, step, stream=2)
        tok = self.tokenizer
        prompts = [r["prompt"] for r in rows for _ in (0, 1)]
        responses = [r[key] for r in rows for key in ("chosen", "rejected")]
        enc = tok(prompts, return_tensors="pt", padding=True)
        limit = self.config.rollout.max_new_tokens
        bodies = [(tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])[:limit]
                  for r in responses]
        width = max(len(b) for b in bodies)
        response = torch.full((len(bodies), width), tok.pad_token_id, dtype=torch.long)
        for i, body in enumerate(bodies):
            response[i, : len(body)] = torch.tensor(body)
        rmask = (response != tok.pad_token_id).float()
        ended = (response == tok.eos_token_id).any(1)
        samples = Samples(
            input_ids=torch.cat([enc["input_ids"], response], 1).to(self.device),
            attention_mask=torch.cat([enc["attention_mask"], rmask.long()], 1).to(self.device),
            prompt_len=enc["input_ids"].shape[1], response_mask=rmask.to(self.device),
            ended=ended.to(self.device),
        )
        with torch.inference_mode(), self.autocast:
            ids, attn, plen = samples.input_ids, samples.attention_mask, samples.prompt_len
            logprobs, _ = forward_response(self.policy, ids, attn, plen, 1.0, with_entropy=False)
            ref_logprobs, _ = forward_response(self.reference, ids, attn, plen, 1.0,
                                               with_entropy=False)
        mask = samples.response_mask
        exp = Experience(
            input_ids=samples.input_ids, attention_mask=samples.attention_mask, prompt_len=plen,
            response_mask=mask, logprobs=logprobs * mask, ref_logprobs=ref_logprobs * mask,
            kl=kl_penalty(logprobs, ref_logprobs, self.config.kl.estimator) * mask,
            scores=torch.tensor([1.0, 0.0] * size, device=self.device),
            group_ids=torch.arange(size).repeat_interleave(2).to(self.device),
        )
        return self._outside_inference(exp), {}

    @staticmethod
    def _outside_inference(exp: Experience) -> Experience:
        """Copies of inference-mode tensors, usable in autograd (e.g. as embedding indices)."""
        return exp.select(torch.arange(len(exp), device=exp.input_ids.device))

    def rollout(self, step: int) -> tuple[Experience, dict[str, Any]]:
        k = self.algo_config.samples_per_prompt
        prompts = self.prompt_batch(step)
        samples, group_ids = self.generate(
            prompts, k, stream_seed(self.config.seed, step, 3),
            self.config.rollout.temperature, self.config.rollout.max_new_tokens,
        )
        repeated = [p for p in prompts for _ in range(k)]
        exp, info = self.score_samples(samples, repeated, self.config.rollout.temperature, True)
        exp.group_ids = group_ids.to(self.device)
        return self._outside_inference(exp), info

    # ---------------------------------------------------------------------------------------
    # update
    # ---------------------------------------------------------------------------------------
    def policy_output(self, mb: Experience, temperature: float) -> PolicyOutput:
        with self.autocast:
            logprobs, entropy = forward_response(
                self.policy, mb.input_ids, mb.attention_mask, mb.prompt_len, temperature
            )
            values = (forward_values(self.critic, mb.input_ids, mb.attention_mask, mb.prompt_len)
                      if self.critic is not None else None)
        return PolicyOutput(logprobs=logprobs * mb.response_mask, entropy=entropy, values=values)

    def lm_loss(self, texts: list[str]) -> torch.Tensor:
        """Mean next-token loss of the policy on ``texts`` + EOS (with gradients)."""
        tok = self.tokenizer
        ids = [tok(t)["input_ids"] + [tok.eos_token_id] for t in texts]
        width = max(len(i) for i in ids)
        batch = torch.full((len(ids), width), tok.pad_token_id, dtype=torch.long)
        for row, seq in enumerate(ids):
            batch[row, : len(seq)] = torch.tensor(seq)
        batch = batch.to(self.device)
        mask = (torch.arange(width, device=self.device)[None, :]
                < torch.tensor([len(i) for i in ids], device=self.device)[:, None]).long()
        labels = batch.masked_fill(mask == 0, -100)
        with self.autocast:
            return self.policy(input_ids=batch, attention_mask=mask, labels=labels).loss

    def update(self, exp: Experience, step: int, temperature: float) -> dict[str, float]:
        """Epochs × minibatches × accumulated micro-batches; one optimizer step per minibatch.

        Groups (samples of one prompt, or one preference pair) are never split across
        minibatches or micro-batches. Each micro-batch's loss is weighted by its share of the minibatch's
        tokens (or sequences, per ``loss_aggregation``) so accumulation equals one big batch.
        """
        c = self.algo_config
        self.policy.train()
        if self.critic is not None:
            self.critic.train()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        groups = torch.unique(exp.group_ids)
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        grad_norms = []
        generator = torch.Generator().manual_seed(stream_seed(self.config.seed, step, 4))
        by_token = getattr(self.algorithm, "loss_aggregation", "token_mean") == "token_mean"
        for _epoch in range(c.epochs):
            order = groups[torch.randperm(len(groups), generator=generator).to(groups.device)]
            for mb_groups in torch.tensor_split(order, min(c.num_minibatches, len(order))):
                mb_index = torch.nonzero(torch.isin(exp.group_ids, mb_groups)).squeeze(1)
                mb_total = (exp.response_mask[mb_index].sum() if by_token
                            else torch.tensor(float(len(mb_index))))
                for micro_groups in torch.tensor_split(mb_groups,
                                                       min(c.grad_accum_steps, len(mb_groups))):
                    micro = torch.nonzero(torch.isin(exp.group_ids, micro_groups)).squeeze(1)
                    mb = exp.select(micro)
                    out = self.policy_output(mb, temperature)
                    loss, metrics = self.algorithm.loss(mb, out)
                    share = (mb.response_mask.sum() if by_token else len(micro)) / mb_total
                    (loss * share).backward()
                    new, old, mask = out.logprobs.detach(), mb.logprobs, mb.response_mask
                    log_ratio = (new - old) * mask
                    ratio = torch.exp(log_ratio)
                    metrics = {
                        **metrics,
                        M.LOSS_TOTAL: loss.detach(),
                        M.POLICY_RATIO_MEAN: masked_mean(ratio, mask),
                        M.POLICY_APPROX_KL: masked_mean((ratio - 1) - log_ratio, mask),
                    }
                    w = float(mask.sum())
                    for key, value in metrics.items():
                        sums[key] = sums.get(key, 0.0) + float(value) * w
                        weights[key] = weights.get(key, 0.0) + w
                max_norm = c.max_grad_norm if c.max_grad_norm is not None else float("inf")
                grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm)))
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
        stats = {k: sums[k] / max(weights[k], 1e-12) for k in sums}
        stats[M.POLICY_GRAD_NORM] = float(np.mean(grad_norms))
        stats[M.POLICY_LR] = self.optimizer.param_groups[0]["lr"]
        return stats

    # ---------------------------------------------------------------------------------------
    # evaluation
    # ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out prompts, fixed decoding and fixed seed: identical for every algorithm."""
        ev, rollout = self.config.eval, self.config.rollout
        prompts = self.eval_prompts[: ev.num_prompts]
        temperature = ev.temperature or rollout.temperature
        samples, _ = self.generate(prompts, 1, ev.seed, temperature,
                                   ev.max_new_tokens or rollout.max_new_tokens)
        exp, info = self.score_samples(samples, prompts, temperature, with_values=False)
        lengths = exp.response_mask.sum(1)
        row = {
            M.EVAL_REWARD: float(info["raw_scores"].mean()),
            M.EVAL_REWARD_STD: float(info["raw_scores"].std()) if len(prompts) > 1 else 0.0,
            M.EVAL_KL: float(exp.kl.sum(1).mean()),
            M.EVAL_RESPONSE_LENGTH: float(lengths.float().mean()),
            M.EVAL_EOS_RATE: float(info["ended"].float().mean()),
        }
        if info["gold"] is not None:
            row[M.EVAL_GOLD_REWARD] = float(np.mean(info["gold"]))
        with (self.run_dir / "samples.jsonl").open("a", encoding="utf-8") as handle:
            for i in range(min(8, len(prompts))):
                handle.write(json.dumps({
                    "train/step": step, "prompt": prompts[i], "response": info["responses"][i],
                    "reward": float(info["raw_scores"][i]),
                    "gold_reward": None if info["gold"] is None else float(info["gold"][i]),
                }) + "\n")
        for extra in self.pm.hook.rlkit_evaluate(run=self, step=step):
            row.update(extra or {})
        return row

    # ---------------------------------------------------------------------------------------
    # the loop
    # ---------------------------------------------------------------------------------------
    def _rollout_metrics(self, exp: Experience, info: dict[str, Any]) -> dict[str, float]:
        if self.algorithm.data_source() != "rollout":
            return {}
        kl_seq = exp.kl.sum(1)
        raw = info["raw_scores"]
        row = {
            M.REWARD: float(raw.mean()),
            M.REWARD_STD: float(raw.std()) if len(raw) > 1 else 0.0,
            M.KL: float(kl_seq.mean()),
            M.ENTROPY: float(info["entropy"].sum(1).mean()),
            M.RLHF_REWARD: float((exp.scores - self.algorithm.kl_coef * kl_seq).mean()),
            M.RESPONSE_LENGTH: float(exp.response_mask.sum(1).mean()),
            M.EOS_RATE: float(info["ended"].float().mean()),
        }
        if info["gold"] is not None:
            row[M.GOLD_REWARD] = float(np.mean(info["gold"]))
        return row

    def _state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "algorithm": self.algorithm.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "meta": {"step": self.step, "samples": self.samples_seen, "tokens": self.tokens_seen,
                     "wall_s": self.wall()},
        }

    def _models(self) -> dict[str, torch.nn.Module]:
        models = {"policy": self.policy}
        if self.critic is not None:
            models["critic"] = self.critic
        return models

    def save_checkpoint(self) -> Path:
        return save_checkpoint(self.run_dir, self.step, self._models(), self._state(),
                               self.config.checkpoint.keep_last)

    def _restore(self) -> None:
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            return
        state = load_checkpoint(ckpt, self._models(),
                                ["optimizer", "scheduler", "algorithm", "rng", "meta"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.algorithm.load_state_dict(state["algorithm"])
        torch.set_rng_state(state["rng"]["torch"])
        meta = state["meta"]
        self.step, self.samples_seen, self.tokens_seen = meta["step"], meta["samples"], meta["tokens"]
        self.wall_offset = meta["wall_s"]

    def wall(self) -> float:
        return self.wall_offset + time.perf_counter() - self._t0

    def _write_status(self, state: str, error: str | None = None) -> None:
        status = {"state": state, "error": error, "step": self.step, "wall_s": self.wall()}
        (self.run_dir / "status.json").write_text(json.dumps(status))

    def _trackers(self) -> list[Any]:
        info = RunInfo(self.config.name, self.run_dir, self.config, self.total_steps,
                       self.step)
        return [self.pm.tracker(name)(info) for name in self.config.tracking.trackers]

    def train(self) -> dict[str, float]:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.resume and (self.run_dir / "metrics.jsonl").exists():
            raise ConfigError(
                f"Run directory '{self.run_dir}' already holds a run. Pass --resume to continue "
                f"it, or choose another name (--set name=...) or --out directory."
            )
        self._t0 = time.perf_counter()
        if self.resume:
            self._restore()
            self._t0 = time.perf_counter()
        (self.run_dir / "config.yaml").write_text(dump_config(cfg))
        if self.step == 0 and (self.run_dir / "samples.jsonl").exists():
            (self.run_dir / "samples.jsonl").unlink()
        trackers = self._trackers()
        self._write_status("running")
        summary: dict[str, float] = {}
        try:
            self.pm.hook.rlkit_run_start(run=self)
            if self.step == 0:
                row = self._axes() | self.evaluate(0)
                for tracker in trackers:
                    tracker.log(row)
            while self.step < self.total_steps:
                summary = self.train_step(trackers)
            self.save_checkpoint()
            self._save_final_policy()
            self.pm.hook.rlkit_run_end(run=self, summary=summary)
        except BaseException as exc:
            state = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            self._write_status(state, f"{type(exc).__name__}: {exc}")
            for tracker in trackers:
                tracker.finish(summary, failed=True)
            raise
        self._write_status("finished")
        for tracker in trackers:
            tracker.finish(summary)
        return summary

    def _axes(self) -> dict[str, float]:
        return {M.STEP: self.step, M.SAMPLES: self.samples_seen, M.TOKENS: self.tokens_seen,
                M.WALL: self.wall()}

    def train_step(self, trackers: list[Any]) -> dict[str, float]:
        cfg = self.config
        step = self.step + 1
        t_start = time.perf_counter()
        if self.algorithm.data_source() == "preferences":
            exp, info = self.preference_batch(step)
            temperature = 1.0
        else:
            exp, info = self.rollout(step)
            temperature = cfg.rollout.temperature
        with torch.no_grad():
            prepared = self.algorithm.prepare(exp)
        t_rollout = time.perf_counter()
        stats = self.update(exp, step, temperature)
        stats.update(self.algorithm.after_update(exp, stats) or {})
        t_end = time.perf_counter()

        n_samples, n_tokens = len(exp), int(exp.response_mask.sum())
        self.step, self.samples_seen, self.tokens_seen = (
            step, self.samples_seen + n_samples, self.tokens_seen + n_tokens)
        row = self._axes() | self._rollout_metrics(exp, info) | prepared | stats
        row[M.POLICY_KL_COEF] = self.algorithm.kl_coef
        if exp.values is not None and exp.returns is not None:
            ev = explained_variance(exp.values, exp.returns, exp.response_mask)
            if math.isfinite(ev):  # undefined when every return is equal: omitted, not faked
                row[M.VALUE_EXPLAINED_VARIANCE] = ev
        elapsed = t_end - t_start
        row |= {
            M.PERF_STEP_TIME: elapsed, M.PERF_ROLLOUT_TIME: t_rollout - t_start,
            M.PERF_UPDATE_TIME: t_end - t_rollout, M.PERF_SAMPLES_PER_S: n_samples / elapsed,
            M.PERF_TOKENS_PER_S: n_tokens / elapsed, M.PERF_PEAK_MEMORY: peak_memory_mb(self.device),
        }
        for extra in self.pm.hook.rlkit_after_update(run=self, step=step, metrics=row):
            row.update(extra or {})
        every = cfg.eval.every
        if (every and step % every == 0) or step == self.total_steps:
            row |= self.evaluate(step)
        row = {k: (float(v) if not isinstance(v, int) else v) for k, v in row.items()}
        for tracker in trackers:
            tracker.log(row)
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and step < self.total_steps:
            self.save_checkpoint()
        return row

    def _save_final_policy(self) -> None:
        target = self.run_dir / "policy"
        self.policy.save_pretrained(target, safe_serialization=True)
        self.tokenizer.save_pretrained(target)
