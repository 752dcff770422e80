"""Experience: prompts → generation backend → reward sources → the batch algorithms see.

:class:`ExperienceMaker` is the service data kinds are built on (``rlkit.core.datakinds``):
the seeded order of items per step (common random numbers: every algorithm sees the same
prompts for a seed), generation through the configured backend, and one batched pass per
model — policy log-probs at the sampling temperature, reference log-probs (only when the
algorithm needs a reference), critic values, per-token KL — plus the reward sources, the
missing-EOS penalty and the task's gold reward.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlkit.algorithm import AlgorithmSpec, Experience
from rlkit.backends import GenerationBackend, SamplingParams
from rlkit.models import fused_critic, on_device
from rlkit.ops import kl_penalty
from rlkit.rollout import (
    Samples,
    forward_response,
    forward_response_and_values,
    forward_values,
)
from rlkit.scoring import RewardInputs, WeightedRewards


def stream_seed(seed: int, step: int, stream: int) -> int:
    """Independent, reproducible seeds per (run seed, step, purpose): a resumed run redraws
    exactly what the uninterrupted run drew, and every algorithm sees the same prompts."""
    return (seed * 1_000_003 + step * 7919 + stream * 104_729) % (2**62)


@dataclass
class RolloutInfo:
    """What the engine measured on a batch beside the :class:`Experience` (typed, not a dict)."""

    raw_scores: Tensor  # [N] the reward before the missing-EOS penalty
    responses: list[str]
    ended: Tensor  # [N] bool
    entropy: Tensor | None = None  # [N, R] masked
    gold: list[float] | None = None
    per_source: dict[str, Tensor] = field(default_factory=dict)
    sampler_logprobs: Tensor | None = None  # [N, R] masked, from the backend
    prompts: list[str] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    truncated: int = 0  # given responses cut to the length limit
    is_rollout: bool = True  # sampled from the policy (the objective/ metrics apply)
    n_samples: int | None = None  # sequences this step consumed (the budget's unit), when the
    # batch holds another number of rows (judged pairs: k generated, 2 kept; KTO's anchors)
    penalized_scores: Tensor | None = None  # [rows of the Experience] R′ (the score after the
    # missing-EOS penalty) where the Experience's own scores are something else (judged
    # pairs: 1/0 preference labels); objective/rlhf_reward reads it


class ExperienceMaker:
    """Builds batches for one run; data kinds call it (they never see the engine)."""

    def __init__(self, *, config: Any, spec: AlgorithmSpec, tokenizer: Any,
                 device: torch.device, policy: torch.nn.Module,
                 reference: torch.nn.Module | None, critic: torch.nn.Module | None,
                 backend: GenerationBackend, rewards: WeightedRewards, task: Any,
                 train_rows: list[dict[str, Any]],
                 autocast: AbstractContextManager[Any] | None = None,
                 dist: Any = None) -> None:
        self.train_rows = train_rows
        self.dist = dist  # rlkit.core.distributed.Dist, or None: one process
        self.span: tuple[int, int] | None = None  # this rank's slice of the last batch_of
        self.config, self.spec, self.tokenizer, self.device = config, spec, tokenizer, device
        self.policy, self.reference, self.critic = policy, reference, critic
        self.backend, self.rewards, self.task = backend, rewards, task
        self.autocast = autocast or nullcontext()

    # -- order -------------------------------------------------------------------------------
    def batch_of(self, items: list[Any], step: int, stream: int,
                 size: int | None = None) -> list[Any]:
        """Items of training step ``step`` (1-based): consecutive slices of per-epoch
        permutations seeded by the run seed alone — the same for every algorithm. Under data
        parallelism, this rank's contiguous slice of them (``self.span``: its first item's
        index and the global count, for :meth:`generate`)."""
        out = self.global_batch_of(items, step, stream, size)
        self.span = None
        if self.dist is not None and self.dist.active:
            start, stop = self.dist.span(len(out))
            self.span = (start, len(out))
            out = out[start:stop]
        return out

    def global_batch_of(self, items: list[Any], step: int, stream: int,
                        size: int | None = None) -> list[Any]:
        """All items of step ``step``, whichever rank asks (:meth:`batch_of` before slicing):
        for a data kind whose rows pair items across the batch (KTO's mismatched anchors)."""
        size = size or self.config.rollout.batch_size
        n = len(items)
        perms: dict[int, np.ndarray] = {}  # a step spans at most a few epochs: one draw each
        out = []
        for i in range((step - 1) * size, step * size):
            epoch, pos = divmod(i, n)
            if epoch not in perms:
                rng = np.random.default_rng(stream_seed(self.config.seed, epoch, stream))
                perms[epoch] = rng.permutation(n)
            out.append(items[perms[epoch][pos]])
        return out

    # -- generation --------------------------------------------------------------------------
    def generate(self, prompts: list[str], k: int, seed: int, temperature: float,
                 max_new_tokens: int, span: tuple[int, int] | None = None
                 ) -> tuple[Samples, Tensor]:
        """k responses per prompt through the backend; returns samples and group ids.
        ``span`` = (index of the first prompt, prompts in the global batch) when these
        prompts are one rank's slice: the slice then samples what one process would."""
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True)
        ids = enc["input_ids"].repeat_interleave(k, 0).to(self.device)
        mask = enc["attention_mask"].repeat_interleave(k, 0).to(self.device)
        group_ids = torch.arange(len(prompts)).repeat_interleave(k)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        r = self.config.rollout
        first, total = span if span is not None else (0, len(prompts))
        params = SamplingParams(max_new_tokens, temperature, r.top_k, r.top_p,
                                min(r.min_new_tokens, max_new_tokens), row_offset=first * k,
                                total_rows=total * k)
        with self.autocast:
            samples = self.backend.generate(ids, mask, params, generator)
        return samples, group_ids

    def tokenize(self, prompts: list[str], responses: list[str]) -> tuple[Samples, int]:
        """Given responses (+ EOS) after left-padded prompts, cut to ``rollout.max_new_tokens``;
        returns the samples and how many responses were cut."""
        tok = self.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True)
        limit = self.config.rollout.max_new_tokens
        bodies = [tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                  for r in responses]
        truncated = sum(len(b) > limit for b in bodies)
        return self.layout(enc["input_ids"], enc["attention_mask"],
                           [b[:limit] for b in bodies]), truncated

    def layout(self, prompt_ids: Tensor, prompt_mask: Tensor, bodies: list[list[int]]) -> Samples:
        """Right-pad token lists after left-padded prompts into one :class:`Samples`."""
        tok = self.tokenizer
        width = max(len(b) for b in bodies)
        response = torch.full((len(bodies), width), tok.pad_token_id, dtype=torch.long)
        for i, body in enumerate(bodies):
            response[i, : len(body)] = torch.tensor(body)
        lengths = torch.tensor([len(b) for b in bodies])
        rmask = (torch.arange(width)[None, :] < lengths[:, None]).float()
        ended = torch.tensor([bool(b) and b[-1] == tok.eos_token_id for b in bodies])
        return Samples(
            input_ids=torch.cat([prompt_ids, response], 1).to(self.device),
            attention_mask=torch.cat([prompt_mask, rmask.long()], 1).to(self.device),
            prompt_len=prompt_ids.shape[1], response_mask=rmask.to(self.device),
            ended=ended.to(self.device),
        )

    # -- scoring -----------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, samples: Samples, rows: list[dict[str, Any]], temperature: float, *,
              with_values: bool, with_rewards: bool = True, with_entropy: bool = True,
              for_eval: bool = False, with_policy: bool = True
              ) -> tuple[Experience, RolloutInfo]:
        """One batched pass per model: old log-probs, reference log-probs, values, rewards.
        ``rows`` are the prompt rows (prompt + metadata), one per sequence. Under data
        parallelism each rank first pads its slice to the global batch's layout, so every
        row is scored exactly as one process scores it. ``with_policy=False`` skips the
        policy forward: ``logprobs`` is then a NaN placeholder (and ``kl`` zeros) that the
        updater fills with the first minibatch's log-probs (``Experience.logprobs_pending``)."""
        samples = self._global_layout(samples)
        ids, attn, plen, mask = (samples.input_ids, samples.attention_mask, samples.prompt_len,
                                 samples.response_mask)
        train = self.config.train
        chunk = train.score_batch_size or len(ids)

        def chunked(fn: Any) -> Any:
            """``fn`` over row chunks of ``train.score_batch_size`` (each chunk keeps the
            batch's full width, so a row's result does not depend on the chunking)."""
            parts = [fn(slice(i, i + chunk)) for i in range(0, len(ids), chunk)]
            if isinstance(parts[0], tuple):
                return tuple(None if p[0] is None else torch.cat(list(p)) for p in zip(*parts))
            return torch.cat(parts)

        values: Tensor | None = None
        fuse = with_values and with_policy and fused_critic(self.policy, self.critic)
        with self.autocast:
            if fuse:  # a shared critic: its values from the policy's own forward
                logprobs, entropy, values = chunked(lambda s: forward_response_and_values(
                    self.policy, self.critic, ids[s], attn[s], plen, temperature,
                    with_entropy=with_entropy))
            elif with_policy:
                logprobs, entropy = chunked(lambda s: forward_response(
                    self.policy, ids[s], attn[s], plen, temperature, with_entropy=with_entropy))
            else:
                logprobs, entropy = torch.full(mask.shape, float("nan"), device=mask.device), None
            ref = None
            if self.reference is not None and (self.spec.needs_reference or for_eval):
                with on_device(self.reference, self.device, train.offload_frozen):
                    ref = chunked(lambda s: forward_response(self.reference, ids[s], attn[s], plen,
                                                          temperature, with_entropy=False)[0])
            if values is not None:
                values = values * mask
            elif with_values and self.critic is not None:
                values = chunked(lambda s: forward_values(self.critic, ids[s], attn[s], plen)) * mask
        logprobs = logprobs * mask
        if ref is not None and not with_policy:
            ref = ref * mask
            kl = torch.zeros_like(logprobs)
        elif ref is not None:
            ref = ref * mask
            kl = kl_penalty(logprobs, ref, self.config.kl.estimator) * mask
        else:
            kl = torch.zeros_like(logprobs)
        prompts = [r["prompt"] for r in rows]
        responses = self.tokenizer.batch_decode(ids[:, plen:], skip_special_tokens=True)
        n = len(ids)
        info = RolloutInfo(raw_scores=torch.zeros(n, device=self.device), responses=responses,
                           ended=samples.ended,
                           entropy=entropy * mask if entropy is not None else None,
                           sampler_logprobs=samples.logprobs, prompts=prompts, metadata=rows)
        scores = torch.zeros(n, device=self.device)
        token_rewards = None
        if with_rewards:
            texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
            lengths = [int(x) for x in mask.sum(1).tolist()]
            scored = self.rewards(RewardInputs(prompts, responses, texts, rows, lengths),
                                  width=mask.shape[1])
            info.raw_scores = scored.scores.to(self.device)
            info.per_source = scored.per_source
            scores = info.raw_scores.clone()
            penalty = self.config.rollout.missing_eos_penalty
            if penalty is not None:
                scores = scores - penalty * (~samples.ended).float()
            if scored.token_rewards is not None:
                token_rewards = scored.token_rewards.to(self.device) * mask
            if self.task is not None:
                info.gold = self.task.gold_reward(prompts, responses, rows)
        exp = Experience(
            input_ids=ids, attention_mask=attn, prompt_len=plen, response_mask=mask,
            logprobs=logprobs, ref_logprobs=ref, kl=kl, scores=scores,
            group_ids=torch.zeros(n, dtype=torch.long, device=self.device), values=values,
            token_rewards=token_rewards,
        )
        return exp, info

    def _global_layout(self, samples: Samples) -> Samples:
        """Pad one rank's samples to the longest prompt and response over all ranks (the
        layout of the whole batch in one process: prompts left-, responses right-padded)."""
        if self.dist is None or not self.dist.active:
            return samples
        width = samples.response_mask.shape[1]
        sizes = self.dist.all_gather_object((samples.prompt_len, width))
        prompt_len, total = max(s[0] for s in sizes), max(s[1] for s in sizes)
        left, right = prompt_len - samples.prompt_len, total - width
        if not left and not right:
            return samples
        pad = self.tokenizer.pad_token_id

        def per_token(t: Tensor) -> Tensor:
            return torch.nn.functional.pad(t, (0, right), value=0)

        return Samples(
            input_ids=torch.nn.functional.pad(samples.input_ids, (left, right), value=pad),
            attention_mask=torch.nn.functional.pad(samples.attention_mask, (left, right),
                                                   value=0),
            prompt_len=prompt_len, response_mask=per_token(samples.response_mask),
            ended=samples.ended,
            logprobs=None if samples.logprobs is None else per_token(samples.logprobs))


def outside_inference(exp: Experience) -> Experience:
    """Copies of inference-mode tensors, usable in autograd (e.g. as embedding indices)."""
    return exp.select(torch.arange(len(exp), device=exp.input_ids.device))
