"""Data kinds: where each training step's batch comes from (``AlgorithmSpec.data_kind``).

A data kind is a registered class (``rlkit_register_data_kinds``). It is built once per run
with the :class:`~rlkit.core.experience.ExperienceMaker` (the engine's batching, generation and
scoring services), the run context and the algorithm's ``data_options``, and answers
:meth:`DataKind.batch` for each step. Built-ins:

* ``rollout`` — k = ``samples_per_prompt`` fresh samples per prompt, scored by the reward
  sources; samples of a prompt share a group id.
* ``preferences`` — (prompt, chosen, rejected) pairs from ``preferences`` or the task; each
  pair is a group of two rows, chosen first, scores 1 / 0. Tokenized once per run.
* ``unpaired`` — single responses labelled desirable (score 1) or undesirable (0), from the
  task's unpaired file or derived from its pairs; with ``mismatched_pairs`` each batch also
  carries (prompt_i, response_{i+1}) rows flagged ``extras["kl_anchor"] = 1`` (KTO's
  reference point).
* ``judged_pairs`` — k ≥ 2 fresh samples per prompt judged by the reward sources; the best and
  the worst form a pair (chosen first, scores 1 / 0, ``extras["pair_valid"]`` 0 on a tie).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from rlkit.algorithm import Experience
from rlkit.core.experience import (
    ExperienceMaker,
    RolloutInfo,
    outside_inference,
    stream_seed,
)
from rlkit.data import load_preference_jsonl, read_jsonl
from rlkit.errors import ConfigError, DataError
from rlkit.hookspecs import hookimpl

log = logging.getLogger("rlkit")


class DataKind(ABC):
    """Base class of data kinds.

    ``rows_per_item``: sequences per item of ``rollout.batch_size`` (the sample budget counts
    sequences); ``temperature()``: the temperature the batch's log-probs are taken at.
    """

    name: ClassVar[str]

    def __init__(self, maker: ExperienceMaker, ctx: Any, options: Mapping[str, Any]) -> None:
        self.maker, self.ctx, self.options = maker, ctx, dict(options)
        self.config = maker.config
        self.truncated = 0

    @classmethod
    @abstractmethod
    def rows_per_item(cls, algorithm_config: Any) -> int:
        """Sequences per prompt (or per pair) in a batch: the sample budget counts them."""

    def temperature(self) -> float:
        return float(self.config.rollout.temperature)

    @abstractmethod
    def batch(self, step: int) -> tuple[Experience, RolloutInfo]:
        """The batch of training step ``step`` (1-based), deterministic for (seed, step)."""


class Rollout(DataKind):
    name = "rollout"

    @classmethod
    def rows_per_item(cls, algorithm_config: Any) -> int:
        return int(algorithm_config.samples_per_prompt)

    def batch(self, step: int) -> tuple[Experience, RolloutInfo]:
        m, k = self.maker, self.rows_per_item(self.ctx.algorithm_config)
        rows = m.batch_of(m.train_rows, step, stream=1)
        samples, group_ids = m.generate([r["prompt"] for r in rows], k,
                                        stream_seed(self.config.seed, step, 3),
                                        self.temperature(), self.config.rollout.max_new_tokens,
                                        span=m.span)
        exp, info = m.score(samples, [r for r in rows for _ in range(k)], self.temperature(),
                            with_values=True)
        exp.group_ids = group_ids.to(m.device)
        return outside_inference(exp), info


class JudgedPairs(Rollout):
    name = "judged_pairs"

    @classmethod
    def rows_per_item(cls, algorithm_config: Any) -> int:
        return max(2, int(algorithm_config.samples_per_prompt))

    def batch(self, step: int) -> tuple[Experience, RolloutInfo]:
        exp, info = super().batch(step)
        keep, valid = [], []
        for group in torch.unique(exp.group_ids):
            index = torch.nonzero(exp.group_ids == group).squeeze(1)
            scores = exp.scores[index]
            keep += [int(index[scores.argmax()]), int(index[scores.argmin()])]
            valid.append(float(scores.max() > scores.min()))
        chosen = torch.tensor(keep, device=exp.scores.device)
        pairs = exp.select(chosen)
        info.penalized_scores = pairs.scores  # R′ of the kept rows, before the labels replace it
        if info.sampler_logprobs is not None:  # row for row with the pairs, like the log-probs
            info.sampler_logprobs = info.sampler_logprobs[chosen.to(info.sampler_logprobs.device)]
        pairs.scores = torch.tensor([1.0, 0.0] * (len(keep) // 2), device=exp.scores.device)
        pairs.group_ids = torch.arange(len(keep) // 2, device=exp.scores.device
                                       ).repeat_interleave(2)
        pairs.extras["pair_valid"] = torch.tensor(valid, device=exp.scores.device
                                                  ).repeat_interleave(2)
        info.n_samples = len(exp)  # k generated per prompt, 2 of them kept
        return pairs, info


class _GivenResponses(DataKind):
    """Responses that come from a file, tokenized once per run; no reward is computed."""

    def temperature(self) -> float:
        return 1.0

    def _encode(self, prompts: list[str], responses: list[str]) -> list[tuple[Any, ...]]:
        """Per item: prompt token ids and response token ids (+ EOS, cut to the limit)."""
        tok, limit = self.maker.tokenizer, self.config.rollout.max_new_tokens
        out, cut = [], 0
        prompt_ids: dict[str, list[int]] = {}
        for prompt, response in zip(prompts, responses):
            if prompt not in prompt_ids:
                prompt_ids[prompt] = tok(prompt)["input_ids"]
            body = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            cut += len(body) > limit
            out.append((prompt, prompt_ids[prompt], body[:limit]))
        if cut:
            log.warning("%d of %d responses are longer than rollout.max_new_tokens=%d tokens and "
                        "are cut to it; raise rollout.max_new_tokens to train on them whole.",
                        cut, len(out), limit)
        self.truncated = cut
        self._check_context(out)
        return out

    def _check_context(self, items: list[tuple[Any, ...]]) -> None:
        """A prompt + response past the policy's context window would fail mid-run (no
        position embedding for it): refused up front, saying what to change."""
        mc = getattr(self.maker.policy, "config", None)
        window = getattr(mc, "n_positions", None) or getattr(mc, "max_position_embeddings", None)
        if not isinstance(window, int) or not items:
            return
        prompt, ids, body = max(items, key=lambda item: len(item[1]) + len(item[2]))
        if len(ids) + len(body) > window:
            raise ConfigError(
                f"A {self.name} prompt has {len(ids)} tokens ({prompt[:60]!r}...) and its "
                f"response {len(body)}: {len(ids) + len(body)} positions, but the policy's "
                f"context holds {window}. Shorten the prompts of the {self.name} file, or "
                f"lower rollout.max_new_tokens (responses are cut to it).")

    def _assemble(self, items: list[tuple[Any, ...]]) -> tuple[Experience, RolloutInfo]:
        m, tok = self.maker, self.maker.tokenizer
        width = max(len(p) for _, p, _ in items)
        pad = tok.pad_token_id
        prompt_ids = torch.tensor([[pad] * (width - len(p)) + p for _, p, _ in items])
        prompt_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for _, p, _ in items])
        samples = m.layout(prompt_ids, prompt_mask, [b for _, _, b in items])
        rows = [{"prompt": prompt} for prompt, _, _ in items]
        skip = not self.needs_policy_forward(len(items))
        exp, info = m.score(samples, rows, 1.0, with_values=False, with_rewards=False,
                            with_entropy=False, with_policy=not skip)
        info.is_rollout = False
        exp = outside_inference(exp)
        exp.logprobs_pending = skip
        return exp, info

    def needs_policy_forward(self, rows: int) -> bool:
        """Whether the batch needs the no-grad policy forward (old log-probs). Not when the
        update's first micro-batch is the whole batch, scored alike before any optimizer
        step (one minibatch, one micro-batch, one process, no score chunking) and the
        algorithm does not read them before the update: the update's first forward then
        computes exactly these log-probs, bit for bit."""
        c, train = self.ctx.algorithm_config, self.config.train
        dist = getattr(self.maker, "dist", None)
        return not (
            not self.ctx.spec.reads_old_logprobs
            and c.num_minibatches == 1 and c.grad_accum_steps == 1
            and (dist is None or not dist.active)
            and (train.score_batch_size is None or train.score_batch_size >= rows))


class Preferences(_GivenResponses):
    name = "preferences"

    def __init__(self, maker: ExperienceMaker, ctx: Any, options: Mapping[str, Any]) -> None:
        super().__init__(maker, ctx, options)
        pairs = load_pairs(ctx)
        prompts = [p["prompt"] for p in pairs for _ in (0, 1)]
        responses = [p[key] for p in pairs for key in ("chosen", "rejected")]
        encoded = self._encode(prompts, responses)
        self.items = [(encoded[2 * i], encoded[2 * i + 1]) for i in range(len(pairs))]

    @classmethod
    def rows_per_item(cls, algorithm_config: Any) -> int:
        return 2

    def batch(self, step: int) -> tuple[Experience, RolloutInfo]:
        pairs = self.maker.batch_of(self.items, step, stream=2)
        exp, info = self._assemble([side for pair in pairs for side in pair])
        size = len(pairs)
        exp.scores = torch.tensor([1.0, 0.0] * size, device=exp.input_ids.device)
        exp.group_ids = torch.arange(size, device=exp.input_ids.device).repeat_interleave(2)
        return exp, info


class Unpaired(_GivenResponses):
    name = "unpaired"

    def __init__(self, maker: ExperienceMaker, ctx: Any, options: Mapping[str, Any]) -> None:
        super().__init__(maker, ctx, options)
        rows = load_unpaired(ctx)
        encoded = self._encode([r["prompt"] for r in rows], [r["completion"] for r in rows])
        self.items = [(e, float(r["label"])) for e, r in zip(encoded, rows)]
        self.mismatched = bool(self.options.get("mismatched_pairs", False))

    @classmethod
    def rows_per_item(cls, algorithm_config: Any) -> int:
        return 1

    def batch(self, step: int) -> tuple[Experience, RolloutInfo]:
        chosen = self.maker.batch_of(self.items, step, stream=5)
        items = [e for e, _ in chosen]
        labels = [label for _, label in chosen]
        anchor = [0.0] * len(items)
        if self.mismatched:  # (x_i, y_{i+1}): KTO's estimate of the reference point
            # i over the whole batch, whichever rank holds x_i: y_{i+1} may be on the next one
            span = self.maker.span
            everything = (chosen if span is None
                          else self.maker.global_batch_of(self.items, step, stream=5))
            start = span[0] if span is not None else 0
            n = len(everything)
            items += [(items[i][0], items[i][1], everything[(start + i + 1) % n][0][2])
                      for i in range(len(items))]
            labels += [0.5] * len(chosen)
            anchor += [1.0] * len(chosen)
        exp, info = self._assemble(items)
        device = exp.input_ids.device
        exp.scores = torch.tensor(labels, device=device)
        exp.group_ids = torch.arange(len(items), device=device)
        exp.extras["kl_anchor"] = torch.tensor(anchor, device=device)
        info.n_samples = len(chosen)  # the mismatched anchor rows are not data
        return exp, info


def load_pairs(ctx: Any) -> list[dict[str, str]]:
    path = ctx.config.preferences
    if path is None and ctx.task is not None:
        path = ctx.task.preferences()
    if path is None:
        raise ConfigError(
            f"Algorithm '{ctx.config.algorithm_name}' trains on preference pairs: set "
            "'preferences' to a JSONL with prompt, chosen, rejected (or use a task that "
            "provides pairs, such as 'reviews')."
        )
    return load_preference_jsonl(path)


def load_unpaired(ctx: Any) -> list[dict[str, Any]]:
    """``prompt``, ``completion``, ``label`` rows: the task's unpaired file, else derived from
    the preference pairs (chosen → desirable, rejected → undesirable)."""
    path = ctx.task.unpaired() if ctx.task is not None else None
    if path is not None:
        rows = read_jsonl(path, required=("prompt", "completion", "label"))
        for i, r in enumerate(rows, 1):
            if not isinstance(r["label"], bool):
                raise DataError(f"{path} line {i}: 'label' must be true or false.")
        return rows
    return [{"prompt": p["prompt"], "completion": p[key], "label": key == "chosen"}
            for p in load_pairs(ctx) for key in ("chosen", "rejected")]


@hookimpl
def rlkit_register_data_kinds(register):
    for kind in (Rollout, Preferences, Unpaired, JudgedPairs):
        register(kind)
