"""One run: data kind → algorithm.prepare → update → metrics, with evaluation, checkpoints
and the run directory. ``Run(config).train()`` does everything.

The engine owns every measurement a comparison rests on, so algorithms differ in nothing but
their plugin: prompts and their order, decoding, log-probs at the sampling temperature,
reference log-probs, per-token KL, values, masks, the optimizer step, clipping, evaluation
and every canonical metric (see docs/metrics.md). Plugins see a :class:`~rlkit.api.RunContext`.
"""

from __future__ import annotations

import math
import os
import random
import resource
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from transformers.utils import logging as hf_logging

from rlkit import metrics as M
from rlkit.algorithm import Algorithm, Experience, PolicyOutput
from rlkit.api import RunContext
from rlkit.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from rlkit.config import RunConfig, algorithm_config, dump_config
from rlkit.core.datakinds import DataKind
from rlkit.core.distributed import Dist
from rlkit.core.evaluate import evaluate, sample_rows
from rlkit.core.experience import ExperienceMaker, RolloutInfo, stream_seed
from rlkit.core.update import Updater, explained_variance_of
from rlkit.data import first_words_rows, read_dataset_rows, read_prompt_rows
from rlkit.errors import ConfigError, DataError, RlkitError
from rlkit.models import (
    AdapterDisabled,
    SharedValueModel,
    adapter_state,
    apply_lora,
    build_critic,
    critic_from_model,
    critic_trunk_source,
    enable_gradient_checkpointing,
    is_lora,
    load_adapter_state,
    load_policy,
    on_device,
    reference_of,
    resolve_device,
    save_policy,
    to_bf16,
)
from rlkit.ops import masked_mean
from rlkit.plugins import PluginManager, get_plugin_manager
from rlkit.rollout import Samples, forward_response
from rlkit.rundir import RunDir, replacing_directory
from rlkit.scoring import FunctionReward, ModelReward, NonFiniteError, RewardSource, WeightedRewards
from rlkit.tracking.base import RunInfo

hf_logging.disable_progress_bar()  # per-load progress bars drown the run's own progress

__all__ = ["Run", "peak_memory_mb", "stream_seed"]


def peak_memory_mb(device: torch.device) -> float:
    """This run's peak memory: on GPU the peak allocated by torch on its device; on CPU the
    resident high-water mark of this process's own address space (``VmHWM``, reset when the
    run starts by :func:`reset_peak_memory`, so a process that runs several runs in turn —
    a Ray worker, a test — measures each run alone; the grid runs each run in its own
    process anyway). Falls back to ``ru_maxrss`` (the process's lifetime peak) off Linux."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def reset_peak_memory(device: torch.device) -> None:
    """Start this run's peak-memory measurement from the memory in use now."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:  # Linux ≥ 4.0: "5" resets VmHWM to the current resident set size
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        pass


def n_params(model: torch.nn.Module | None) -> int:
    return 0 if model is None else sum(p.numel() for p in model.parameters())


#: ``train.threads: auto`` uses one thread below this many policy parameters (measured:
#: benchmarks/README.md, "Threads").
ONE_THREAD_BELOW = 1_000_000
#: set by a grid's runner in each worker: the cores that worker may use
THREADS_SHARE_ENV = "RLKIT_THREADS_SHARE"


def auto_threads(policy_params: int) -> int:
    """``train.threads: auto``: 1 for a small policy, else this process's share of the cores
    (the grid runner's share, or the cores it may run on divided among the distributed
    processes on this machine)."""
    if policy_params < ONE_THREAD_BELOW:
        return 1
    if share := os.environ.get(THREADS_SHARE_ENV):
        return max(1, int(share))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // max(1, local))


class Run:
    """A single training run."""

    def __init__(self, config: RunConfig, *, out: str | Path | None = None, resume: bool = False,
                 pm: PluginManager | None = None, force: bool = False,
                 restart: bool = False) -> None:
        self.config = config
        self.pm = pm or get_plugin_manager()
        self.dir = RunDir(out if out is not None else config.out, config.name)
        self.run_dir = self.dir.path
        self.resume, self.force, self.restart = resume, force, restart
        self._check_run_dir()  # before building anything: a refusal costs no set-up time
        self.step = 0
        self.samples_seen = self.tokens_seen = self.optimizer_steps = 0
        self.flops = 0.0
        self.wall_offset = 0.0
        self._t0 = time.perf_counter()
        self._setup()

    # ---------------------------------------------------------------------------------------
    # set-up
    # ---------------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.config
        if isinstance(cfg.train.threads, int):
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        # Saturated softmaxes produce subnormal floats, which are ~100× slower on x86 CPUs.
        torch.set_flush_denormal(True)
        try:
            self.device = resolve_device(cfg.train.device)
        except RuntimeError as exc:
            raise ConfigError(f"train.device={cfg.train.device!r}: {exc}. Use 'auto', 'cpu' or "
                              f"'cuda[:N]'.") from None
        _check_device(self.device, cfg.train.device)
        self._setup_parallel()
        self.task = self.pm.task(cfg.task.name)(cfg.task.options) if cfg.task.name else None
        self.train_rows, eval_rows = self._load_prompts()
        n_eval, n_select = cfg.eval.num_prompts, cfg.eval.select_prompts
        self.eval_rows = eval_rows[:n_eval]
        self.select_rows = eval_rows[n_eval:n_eval + n_select] if n_select else []
        if n_select and len(self.select_rows) < n_select:
            raise ConfigError(
                f"eval.select_prompts={n_select} needs {n_eval + n_select} held-out prompts "
                f"(eval.num_prompts={n_eval} for reporting, then the selection split); only "
                f"{len(eval_rows)} exist. Lower eval.num_prompts or eval.select_prompts.")

        self.algorithm_class = self.pm.algorithm(cfg.algorithm_name)
        self.algo_config = algorithm_config(cfg, self.pm.registry.algorithms)
        self.spec = self.algorithm_class.spec(self.algo_config)
        self.spec.validate(cfg.algorithm_name)
        self.data_kind_class: type[DataKind] = self.pm.data_kind(self.spec.data_kind)
        self.total_steps = self._total_steps()
        self.algorithm: Algorithm[Any] = self.algorithm_class(self.algo_config, self.total_steps)

        self.policy, self.tokenizer = _loading("policy", cfg.policy.model, load_policy, cfg,
                                               self.task, self.pm.hook)
        if cfg.train.threads == "auto":
            torch.set_num_threads(auto_threads(n_params(self.policy)))
        self._check_context()
        self._setup_policy()
        # Training uses a reference only when the algorithm declares it; the comparison's KL
        # axis (eval/kl) needs one for every algorithm, unless eval.kl is off.
        self.reference = (reference_of(self.policy)
                          if self.spec.needs_reference or cfg.eval.kl else None)
        self._place_reference()
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                         if cfg.train.bf16 and self.device.type == "cuda" else nullcontext())
        self.ctx = RunContext(
            config=cfg, algorithm_config=self.algo_config, spec=self.spec,
            tokenizer=self.tokenizer, task=self.task, device=self.device,
            run_dir=self.run_dir, total_steps=self.total_steps, _services=self)
        self.rewards = self._load_rewards()
        self._place_reward_model()
        self.critic = self._build_critic() if self.spec.needs_critic else None
        self._setup_critic()
        self.backend = self.pm.backend(cfg.rollout.backend)(self.policy, self.tokenizer,
                                                             self.device, cfg)
        self.maker = ExperienceMaker(
            config=cfg, spec=self.spec, tokenizer=self.tokenizer, device=self.device,
            policy=self.policy, reference=self.reference, critic=self.critic,
            backend=self.backend, rewards=self.rewards, task=self.task,
            train_rows=self.train_rows, autocast=self.autocast, dist=self.dist)
        self.data = self.data_kind_class(self.maker, self.ctx, self.spec.data_options)
        self.algorithm.setup(self.ctx)
        self.updater = Updater(
            algorithm=self.algorithm, spec=self.spec, policy=self.policy, critic=self.critic,
            tokenizer=self.tokenizer, device=self.device, seed=cfg.seed,
            total_steps=self.total_steps, skip_nonfinite=cfg.train.skip_nonfinite,
            autocast=self.autocast, dist=self.dist, optimizer_impl=cfg.train.optimizer_impl)
        model = self.rewards.model_source
        self._params = {"policy": n_params(self.policy),
                        "reference": (0 if not self.spec.needs_reference  # eval-only
                                      else n_params(self.policy)
                                      if isinstance(self.reference, AdapterDisabled)
                                      else n_params(self.reference)),
                        "critic": (n_params(self.policy)  # a shared critic runs the trunk
                                   if isinstance(self.critic, SharedValueModel)
                                   else n_params(self.critic)),
                        "reward": n_params(model.model) if model is not None else 0}

    def _setup_parallel(self) -> None:
        """Ranks under torchrun (docs/scaling.md): rank r uses cuda:LOCAL_RANK on GPU."""
        cfg = self.config
        if (int(os.environ.get("WORLD_SIZE", "1")) > 1 and self.device.type == "cuda"
                and self.device.index is None):
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.dist = Dist.from_env(self.device)
        world = self.dist.world_size
        if world > 1 and (cfg.rollout.batch_size < world or cfg.eval.num_prompts < world):
            raise ConfigError(
                f"{world} processes split rollout.batch_size={cfg.rollout.batch_size} prompts "
                f"and eval.num_prompts={cfg.eval.num_prompts} between them: each must be at "
                f"least {world}.")

    def _setup_policy(self) -> None:
        """LoRA, bf16 weights, gradient checkpointing; then the policy moves to the device."""
        train = self.config.train
        if self.config.policy.lora is not None:
            self.policy = apply_lora(self.policy, self.config.policy.lora)
        if train.bf16_weights != "none":
            to_bf16(self.policy, frozen_only=train.bf16_weights == "frozen")
        if train.gradient_checkpointing:
            enable_gradient_checkpointing(self.policy)
        self.policy.to(self.device)
        self.dist.broadcast_module(self.policy)

    def _place_reference(self) -> None:
        """A full reference copy holds frozen weights: bf16 with bf16_weights, and on the CPU
        between scoring passes with offload_frozen (the LoRA reference is the policy itself)."""
        ref, train = self.reference, self.config.train
        if ref is None or isinstance(ref, AdapterDisabled):
            return
        if train.bf16_weights != "none":
            to_bf16(ref, frozen_only=False)
        if train.offload_frozen:
            ref.to("cpu")

    def _place_reward_model(self) -> None:
        train = self.config.train
        for _, source, _ in self.rewards.sources:
            if isinstance(source, ModelReward):
                if train.bf16_weights != "none":
                    to_bf16(source.model, frozen_only=False)
                if train.offload_frozen:
                    source.offload = True
                    source.model.to("cpu")

    def _setup_critic(self) -> None:
        critic, train = self.critic, self.config.train
        if critic is None:
            return
        if train.bf16_weights == "all":
            to_bf16(critic, frozen_only=False)
        else:  # a critic copied from a bf16 reward model or base trains with fp32 masters
            for param in critic.parameters():
                if param.requires_grad and param.dtype == torch.bfloat16:
                    param.data = param.data.float()
            if train.bf16_weights == "frozen":
                to_bf16(critic, frozen_only=True)
        if train.gradient_checkpointing and not isinstance(critic, SharedValueModel):
            enable_gradient_checkpointing(critic)
        self.dist.broadcast_module(critic)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.updater.optimizer

    @property
    def train_prompts(self) -> list[str]:
        return [r["prompt"] for r in self.train_rows]

    def _total_steps(self) -> int:
        """``train.samples`` (a budget in sequences, equal across algorithms) or ``train.steps``."""
        budget = self.config.train.samples
        if budget is None:
            return self.config.train.steps
        per_step = self.config.rollout.batch_size * self.data_kind_class.rows_per_item(
            self.algo_config)
        return max(1, math.ceil(budget / per_step))

    def _load_prompts(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        pc = self.config.prompts
        if pc.dataset is not None:
            train = read_dataset_rows(pc.dataset, pc.split, pc.field, pc.limit)
            held_out = (read_dataset_rows(pc.dataset, pc.eval_split, pc.field, pc.limit)
                        if pc.eval_split else train)
            return first_words_rows(train, pc.max_words), first_words_rows(held_out, pc.max_words)
        if pc.train is not None:
            train = read_prompt_rows(pc.train, pc.field)
            if pc.eval is not None:
                held_out = read_prompt_rows(pc.eval, pc.field)
            else:  # a fixed split (independent of the run seed: every run evaluates alike)
                order = list(range(len(train)))
                random.Random(0).shuffle(order)
                n_eval = max(1, int(len(train) * pc.eval_fraction)) if len(train) > 1 else 0
                held_out = [train[i] for i in order[:n_eval]] or list(train)
                train = [train[i] for i in order[n_eval:]] or list(train)
            return first_words_rows(train, pc.max_words), first_words_rows(held_out, pc.max_words)
        if self.task is None:
            raise ConfigError(
                "No prompts: set task.name to a registered task (e.g. 'reviews') or "
                "prompts.train to a JSONL/CSV file."
            )
        train, held_out = self.task.prompt_rows("train"), self.task.prompt_rows("eval")
        if not train:
            raise DataError(f"Task '{self.task.name}' produced an empty training prompt set.")
        return train, held_out or train

    def _load_rewards(self) -> WeightedRewards:
        cfg, registry = self.config, self.pm.registry.rewards
        sources: list[tuple[str, RewardSource, float]] = []
        for entry in cfg.reward.entries():
            spec: Any = entry.source
            if spec == "task":
                spec = self.task.reward() if self.task is not None else None
                if spec is None:
                    raise ConfigError(
                        "reward.model is 'task' but no task provides a reward: set reward.model "
                        f"to a registered reward source ({', '.join(sorted(registry))}) or a "
                        "sequence-classification model directory / hub id.")
            label = str(Path(spec).name) if isinstance(spec, str) else str(spec)
            found = registry.get(spec) if isinstance(spec, str) else None
            source: RewardSource
            if isinstance(found, type) and issubclass(found, RewardSource):
                source = found(self.ctx, entry.options)
            elif callable(found):
                source = FunctionReward(spec, found)  # type: ignore[arg-type]
            else:
                loaded = self.pm.hook.rlkit_load_model(spec=spec, role="reward", run_config=cfg)
                if loaded is None:
                    raise ConfigError(f"No plugin could load the reward model '{spec}'.")
                model, tokenizer = loaded
                source = ModelReward(model, tokenizer, cfg.reward.batch_size, self.device,
                                     cfg.reward.label)
            if label in {s[0] for s in sources}:
                label = f"{label}_{len(sources)}"
            sources.append((label, source, entry.weight))
        return WeightedRewards(sources)

    def _build_critic(self) -> torch.nn.Module:
        cfg = self.config
        if cfg.critic.shared:
            if cfg.critic.model is not None:
                raise ConfigError("critic.shared puts the value head on the policy's trunk; "
                                  "it cannot also load critic.model. Set one of them.")
            return SharedValueModel(self.policy).to(self.device)
        if cfg.critic.model is not None:
            loaded = self.pm.hook.rlkit_load_model(spec=cfg.critic.model, role="critic",
                                                   run_config=cfg)
            if loaded is None:
                raise ConfigError(f"No plugin could load the critic model '{cfg.critic.model}'.")
            return critic_from_model(loaded[0], loaded[1], self.tokenizer).to(self.device)
        model = self.rewards.model_source
        return build_critic(self.spec.critic_init, critic_trunk_source(self.policy),
                            self.tokenizer,
                            model.model if model is not None else None,
                            model.tokenizer if model is not None else None).to(self.device)

    # ---------------------------------------------------------------------------------------
    # services behind RunContext (and the names tests and the conformance kit use)
    # ---------------------------------------------------------------------------------------
    def seed_for(self, purpose: int) -> int:
        return stream_seed(self.config.seed, self.step, purpose)

    def policy_output(self, mb: Experience, temperature: float | None = None) -> PolicyOutput:
        return self.updater.policy_output(
            mb, self.data.temperature() if temperature is None else temperature)

    def policy_logprobs(self, batch: Experience, grad: bool) -> torch.Tensor:
        with torch.enable_grad() if grad else torch.no_grad():
            with self.autocast:
                logprobs, _ = forward_response(self.policy, batch.input_ids,
                                               batch.attention_mask, batch.prompt_len,
                                               self.data.temperature(), with_entropy=False)
        return logprobs * batch.response_mask

    @torch.no_grad()
    def reference_logprobs(self, batch: Experience) -> torch.Tensor:
        if self.reference is None or not self.spec.needs_reference:
            raise RlkitError(f"Algorithm '{self.config.algorithm_name}' declared "
                             f"needs_reference = False, so the run has no reference model.")
        with self.autocast, on_device(self.reference, self.device,
                                      self.config.train.offload_frozen):
            logprobs, _ = forward_response(self.reference, batch.input_ids,
                                           batch.attention_mask, batch.prompt_len,
                                           self.data.temperature(), with_entropy=False)
        return logprobs * batch.response_mask

    def lm_loss(self, texts: list[str]) -> torch.Tensor:
        return self.updater.lm_loss(texts)

    def tokenize(self, prompts: list[str], responses: list[str]) -> Experience:
        samples, _ = self.maker.tokenize(prompts, responses)
        zeros = torch.zeros_like(samples.response_mask)
        return Experience(samples.input_ids, samples.attention_mask, samples.prompt_len,
                          samples.response_mask, zeros, None, zeros,
                          torch.zeros(len(prompts), device=self.device),
                          torch.arange(len(prompts), device=self.device))

    def generate(self, prompts: list[str], k: int, seed: int, temperature: float,
                 max_new_tokens: int) -> tuple[Samples, torch.Tensor]:
        return self.maker.generate(prompts, k, seed, temperature, max_new_tokens)

    def batch(self, step: int) -> tuple[Experience, RolloutInfo]:
        """The data kind's batch of ``step`` (under data parallelism each rank makes its slice
        and every rank then holds the gathered global batch)."""
        exp, info = self.data.batch(step)
        return self.dist.gather_batch(exp, info, self.tokenizer.pad_token_id, self.device)

    rollout = batch  # the names 0.1's tests use
    preference_batch = batch

    def update(self, exp: Experience, step: int, temperature: float) -> dict[str, float]:
        return self.updater.update(exp, step, temperature)

    # ---------------------------------------------------------------------------------------
    # measurements
    # ---------------------------------------------------------------------------------------
    def _rollout_metrics(self, exp: Experience, info: RolloutInfo) -> dict[str, float]:
        if not info.is_rollout:
            return {}
        kl_seq = exp.kl.sum(1)
        raw, mask = info.raw_scores, exp.response_mask
        scores = info.penalized_scores if info.penalized_scores is not None else exp.scores
        row = {
            M.REWARD: float(raw.mean()),
            M.REWARD_STD: float(raw.std()) if len(raw) > 1 else 0.0,
            M.KL: float(kl_seq.mean()),
            M.RLHF_REWARD: float((scores - self.algorithm.kl_coef * kl_seq).mean()),
            M.RESPONSE_LENGTH: float(mask.sum(1).mean()),
            M.EOS_RATE: float(info.ended.float().mean()),
        }
        if info.entropy is not None:
            row[M.ENTROPY] = float(info.entropy.sum(1).mean())
        if info.gold is not None:
            row[M.GOLD_REWARD] = float(np.mean(info.gold))
        if info.sampler_logprobs is not None and len(info.sampler_logprobs) == len(exp):
            row[M.LOGPROB_MISMATCH] = float(masked_mean(
                (exp.logprobs - info.sampler_logprobs.to(exp.logprobs)).abs(), mask))
        k = self.data_kind_class.rows_per_item(self.algo_config)
        if k > 1 and len(raw) % k == 0:
            groups = raw.view(-1, k)
            row[M.ZERO_STD_GROUPS] = float((groups.amax(1) == groups.amin(1)).float().mean())
        if len(info.per_source) > 1:
            for name, scores in info.per_source.items():
                row[M.reward_source_key(name)] = float(scores.mean())
        return row

    def _step_flops(self, exp: Experience, info: RolloutInfo) -> float:
        """Estimated FLOPs of one step (docs/metrics.md): 2·N per token for a forward,
        4·N for a backward, N the model's parameters, tokens = the padded batch."""
        tokens = float(exp.input_ids.numel())
        p, c = self._params, self.algo_config
        forward = (p["policy"] * (2 if info.is_rollout else 1) + p["reference"] + p["critic"]
                   + (p["reward"] if info.is_rollout else 0))  # sampling ≈ one more forward
        update = c.epochs * (p["policy"] + p["critic"]) * 3  # forward + backward
        return 2.0 * tokens * (forward + update)

    # ---------------------------------------------------------------------------------------
    # checkpoints and status
    # ---------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.updater.scheduler.state_dict(),
            "algorithm": self.algorithm.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "meta": {"step": self.step, "samples": self.samples_seen, "tokens": self.tokens_seen,
                     "optimizer_steps": self.optimizer_steps, "flops": self.flops,
                     "wall_s": self.wall()},
        } | ({"adapter": adapter_state(self.policy)} if is_lora(self.policy) else {})

    def _models(self) -> dict[str, torch.nn.Module]:
        """The modules a checkpoint saves whole; a LoRA policy saves only its adapter (in
        ``_state``): the frozen base is the one it was loaded or built from."""
        models = {} if is_lora(self.policy) else {"policy": self.policy}
        if self.critic is not None:
            models["critic"] = self.critic
        return models

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes; under data parallelism every rank holds the same state."""
        if not self.dist.is_main:
            return None
        return save_checkpoint(self.run_dir, self.step, self._models(), self._state(),
                               self.config.checkpoint.keep_last)

    def _restore(self) -> None:
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            raise ConfigError(
                f"--resume: '{self.run_dir}' holds no checkpoint to resume from (it was "
                f"stopped before its first one). Start it over with --restart (this deletes its "
                f"logs), and set checkpoint.every so that long runs leave checkpoints.")
        lora = is_lora(self.policy)
        try:
            state = load_checkpoint(ckpt, self._models(), ["optimizer", "scheduler",
                                                           "algorithm", "rng", "meta"]
                                    + ["adapter"] * lora)
        except Exception as exc:  # noqa: BLE001 - safetensors, JSON, shape errors alike
            older = sorted(ckpt.parent.glob("step_*"))[:-1]
            fix = (f"delete it to resume from the one before ({older[-1].name})" if older
                   else "start the run over with --restart")
            raise ConfigError(
                f"--resume: the checkpoint '{ckpt}' is unreadable or damaged "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                f"{fix}.") from None
        if lora:
            load_adapter_state(self.policy, state["adapter"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updater.scheduler.load_state_dict(state["scheduler"])
        self.algorithm.load_state_dict(state["algorithm"])
        torch.set_rng_state(state["rng"]["torch"])
        meta = state["meta"]
        self.step, self.samples_seen, self.tokens_seen = meta["step"], meta["samples"], meta["tokens"]
        self.optimizer_steps = int(meta.get("optimizer_steps", 0))
        self.flops = float(meta.get("flops", 0.0))
        self.wall_offset = meta["wall_s"]

    def _check_run_dir(self) -> None:
        """A new run never overwrites an existing one; a resumed one continues the same run."""
        if self.resume:
            if latest_checkpoint(self.run_dir) is None:
                raise ConfigError(
                    f"--resume: '{self.run_dir}' holds no checkpoint to resume from (it was "
                    f"stopped before its first one, or never started). Start it over with "
                    f"--restart (this deletes its logs), and set checkpoint.every so that long "
                    f"runs leave checkpoints.")
            self._check_same_config()
        elif self.dir.has_run() and not self.restart:
            raise ConfigError(
                f"Run directory '{self.run_dir}' already holds a run. Pass --resume to continue "
                f"it, --restart to start it over (deleting its logs and checkpoints), or choose "
                f"another name (--set name=...) or --out directory.")

    def _check_context(self) -> None:
        """Every prompt plus the longest response must fit the policy's context window;
        past it the position embeddings have no entry and the model fails mid-run."""
        mc = getattr(self.policy, "config", None)
        limit = getattr(mc, "n_positions", None) or getattr(mc, "max_position_embeddings", None)
        if not isinstance(limit, int):
            return
        cfg = self.config
        new = max(cfg.rollout.max_new_tokens, cfg.eval.max_new_tokens or 0)
        rows = self.train_rows + self.eval_rows + self.select_rows
        prompts = list(dict.fromkeys(r["prompt"] for r in rows))
        lengths = [len(ids) for ids in self.tokenizer(prompts)["input_ids"]] if prompts else [0]
        longest = max(range(len(lengths)), key=lengths.__getitem__)
        if lengths[longest] + new <= limit:
            return
        fit = max(0, limit - new)
        raise ConfigError(
            f"The longest prompt has {lengths[longest]} tokens ({prompts[longest][:60]!r}...); "
            f"with up to {new} new tokens (rollout/eval max_new_tokens) that needs "
            f"{lengths[longest] + new} positions, but the policy's context holds {limit}. "
            f"Shorten the prompts to at most {fit} tokens (prompts.max_words cuts each to its "
            f"first N words), or lower rollout.max_new_tokens, or use a model with a longer "
            f"context.")

    def _check_same_config(self) -> None:
        """Resume continues the same run: a changed config is refused with the changed keys."""
        saved = self.dir.read_config()
        now = dump_config(self.config)
        if saved is None or saved == now or self.force:
            return
        old, new = _flatten(yaml.safe_load(saved) or {}), _flatten(yaml.safe_load(now) or {})
        changed = [f"  {k}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}"
                   for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if not changed:
            return
        raise ConfigError(
            f"--resume: the config differs from the one '{self.run_dir}' was started with:\n"
            + "\n".join(changed) + "\nResume with the original settings, or pass --force to "
            "continue with the new ones (the saved config.yaml is then replaced).")

    def wall(self) -> float:
        return self.wall_offset + time.perf_counter() - self._t0

    def _write_status(self, state: str, error: str | None = None,
                      tb: str | None = None) -> None:
        if not self.dist.is_main:
            return
        self.dir.write_status(state, step=self.step, wall_s=self.wall(), error=error,
                              traceback=tb, total=self.total_steps)

    def _trackers(self) -> list[Any]:
        if not self.dist.is_main:
            return []
        info = RunInfo(self.config.name, self.run_dir, self.config, self.total_steps, self.step)
        return [self.pm.tracker(name)(info) for name in self.config.tracking.trackers]

    # ---------------------------------------------------------------------------------------
    # the loop
    # ---------------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        if not self.dist.is_main:  # rank 0 holds the lock and writes; the others only read
            return self._train()
        self.dir.create()
        with self.dir.lock():  # one writer per run directory (a second names this process)
            return self._train()

    def _train(self) -> dict[str, float]:
        self._check_run_dir()  # again, now that this process holds the lock
        if self.restart and self.dist.is_main:
            self.dir.clear()
        self._t0 = time.perf_counter()
        reset_peak_memory(self.device)
        if self.resume:
            self._restore()
            self._t0 = time.perf_counter()
        self.dist.barrier()  # every rank has read the run directory before rank 0 writes
        if self.dist.is_main:
            if self.resume:
                self.dir.cut_back(self.step)
            else:
                self.dir.fresh()
            self.dir.write_config(dump_config(self.config))
        trackers = self._trackers()
        self._write_status("running")
        summary: dict[str, float] = {}
        try:
            self.pm.hook.rlkit_run_start(ctx=self.ctx)
            if self.step == 0:
                row = self._axes() | self.evaluate(0)
                for tracker in trackers:
                    tracker.log(row)
            while self.step < self.total_steps:
                summary = self.train_step(trackers)
            self.save_checkpoint()
            self._save_final_policy()
            self.pm.hook.rlkit_run_end(ctx=self.ctx, summary=summary)
        except BaseException as exc:
            state = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            if isinstance(exc, NonFiniteError) and exc.step is None:
                exc.at_step(self.step + 1)
            self._write_status(state, f"{type(exc).__name__}: {exc}",
                               None if isinstance(exc, RlkitError) else traceback.format_exc())
            for tracker in trackers:
                tracker.finish(summary, failed=True)
            raise
        self._write_status("finished")
        for tracker in trackers:
            tracker.finish(summary)
        return summary

    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out prompts, fixed decoding and fixed seeds: identical for every algorithm."""
        row, samples = evaluate(self.maker, self.config, self.eval_rows, self.select_rows, step)
        self.ctx.last_eval = samples
        if self.dist.is_main:
            self.dir.append_samples(sample_rows(samples))
        for extra in self.pm.hook.rlkit_evaluate(ctx=self.ctx, step=step):
            row.update(extra or {})
        return row

    def _axes(self) -> dict[str, float]:
        return {M.STEP: self.step, M.SAMPLES: self.samples_seen, M.TOKENS: self.tokens_seen,
                M.OPTIMIZER_STEPS: self.optimizer_steps, M.FLOPS: self.flops, M.WALL: self.wall()}

    def train_step(self, trackers: list[Any]) -> dict[str, float]:
        cfg = self.config
        step = self.step + 1
        t_start = time.perf_counter()
        try:
            exp, info = self.batch(step)
        except NonFiniteError as exc:
            if not cfg.train.skip_nonfinite:
                raise exc.at_step(step) from None
            return self._skip_step(step, trackers)
        with torch.no_grad():
            prepared = self.algorithm.prepare(exp)
        t_rollout = time.perf_counter()
        stats = self.update(exp, step, self.data.temperature())
        stats.update(self.algorithm.after_update(exp, stats) or {})
        t_end = time.perf_counter()
        self.backend.sync_weights(self.policy)

        c = self.algo_config
        # train/samples counts what the budget counts: sequences generated or read this step
        n_samples = info.n_samples if info.n_samples is not None else len(exp)
        n_tokens = int(exp.response_mask.sum())
        self.step = step
        self.samples_seen += n_samples
        self.tokens_seen += n_tokens
        self.optimizer_steps += c.epochs * min(c.num_minibatches, len(torch.unique(exp.group_ids)))
        self.flops += self._step_flops(exp, info)
        row = self._axes() | self._rollout_metrics(exp, info) | prepared | stats
        row[M.POLICY_KL_COEF] = self.algorithm.kl_coef
        ev = explained_variance_of(exp)
        if ev is not None:
            row[M.VALUE_EXPLAINED_VARIANCE] = ev
        # the slowest rank's times and the largest peak per device (one process: its own)
        perf = self.dist.max_of({
            M.PERF_STEP_TIME: t_end - t_start, M.PERF_ROLLOUT_TIME: t_rollout - t_start,
            M.PERF_UPDATE_TIME: t_end - t_rollout, M.PERF_PEAK_MEMORY: peak_memory_mb(self.device),
        })
        elapsed = perf[M.PERF_STEP_TIME]
        row |= perf | {M.PERF_SAMPLES_PER_S: n_samples / elapsed,
                       M.PERF_TOKENS_PER_S: n_tokens / elapsed}
        for extra in self.pm.hook.rlkit_after_update(ctx=self.ctx, step=step, metrics=row):
            row.update(extra or {})
        every = cfg.eval.every
        if (every and step % every == 0) or step == self.total_steps:
            row |= self.evaluate(step)
        row = {k: (float(v) if not isinstance(v, int) else v) for k, v in row.items()}
        for tracker in trackers:
            tracker.log(row)
        if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and step < self.total_steps:
            self.save_checkpoint()
        self._write_status("running")  # the heartbeat
        return row

    def _skip_step(self, step: int, trackers: list[Any]) -> dict[str, float]:
        """``train.skip_nonfinite``: a batch with non-finite rewards is not trained on; the
        step is logged with ``train/nonfinite_skipped`` = 1 (evaluation and checkpoints as
        usual), so the skip is counted, never silent."""
        self.step = step
        row: dict[str, float] = {**self._axes(), M.NONFINITE_SKIPPED: 1.0}
        every = self.config.eval.every
        if (every and step % every == 0) or step == self.total_steps:
            row |= self.evaluate(step)
        for tracker in trackers:
            tracker.log(row)
        every = self.config.checkpoint.every
        if every and step % every == 0 and step < self.total_steps:
            self.save_checkpoint()
        self._write_status("running")
        return row

    def _save_final_policy(self) -> None:
        """``policy/``: a Hugging Face model; under LoRA merged (``train.save_merged``) or the
        adapter in peft format. Written into a temporary directory beside it and renamed into
        place, so a run killed while saving leaves no half-written ``policy/`` and no stray
        files (its resume removes the killed save's temporary directory)."""
        if not self.dist.is_main:
            return
        _plain_tokenizer_state(self.tokenizer)
        final = self.run_dir / "policy"
        with replacing_directory(final) as tmp:
            save_policy(self.policy, self.tokenizer, tmp, merged=self.config.train.save_merged,
                        final=final)


def _plain_tokenizer_state(tokenizer: Any) -> None:
    """A fast tokenizer keeps the padding/truncation of its last call, and saves it in
    tokenizer.json; they are per-call settings, so they are turned off before saving: the
    saved files then do not depend on which call came last (a resumed run saves the same)."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "no_padding"):
        backend.no_padding()
        backend.no_truncation()


def _check_device(device: torch.device, name: str) -> None:
    """A GPU the machine lacks is one paragraph here, not a CUDA assertion mid-set-up."""
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"train.device={name!r}, but torch sees no CUDA GPU here (torch "
                              f"{torch.__version__}, CUDA build: {torch.version.cuda}). Use "
                              f"train.device=cpu or auto, or install a CUDA build of torch.")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"train.device={name!r}, but this machine has {count} GPU(s): "
                              f"cuda:0 .. cuda:{count - 1}.")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device={name!r}, but MPS is not available here. Use "
                          f"train.device=cpu or auto.")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"train.device={name!r}: rlkit runs on 'cpu', 'cuda[:N]' or 'mps' "
                          f"(or 'auto').")


def _loading(role: str, spec: Any, load: Any, *args: Any) -> Any:
    """``load(*args)``; weights that cannot be read (damaged or truncated files) become one
    paragraph naming the model."""
    try:
        return load(*args)
    except RlkitError:
        raise
    except Exception as exc:
        module = type(exc).__module__ or ""
        if not (isinstance(exc, (OSError, EOFError)) or "safetensors" in module
                or "safetensor" in type(exc).__name__.lower()
                or "pickle" in type(exc).__name__.lower()):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(
            f"Cannot load the {role} '{spec}': its weights are unreadable or damaged "
            f"({type(exc).__name__}: {first}). Re-download or re-save the model (e.g. rerun "
            f"`rlkit sft` / `rlkit prepare`), or point {role}.model elsewhere.") from None


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out

