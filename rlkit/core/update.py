"""The update: epochs × minibatches × accumulated micro-batches, one optimizer step per
minibatch, and the measurements every algorithm shares (ratio, approx-KL, clip fraction,
gradient norms), computed here once with one definition.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlkit import metrics as M
from rlkit.algorithm import Algorithm, AlgorithmSpec, Experience, PolicyOutput
from rlkit.core.experience import stream_seed
from rlkit.models import fused_critic
from rlkit.ops import masked_mean, ratio_stats
from rlkit.rollout import forward_response, forward_response_and_values, forward_values
from rlkit.scoring import NonFiniteError


def make_optimizer(policy: torch.nn.Module, critic: torch.nn.Module | None,
                   c: Any, impl: str = "foreach") -> torch.optim.Optimizer:
    """AdamW with one parameter group for the policy and one for the critic (its own lr);
    ``impl`` (``train.optimizer_impl``): ``for_loop``, ``foreach`` (multi-tensor) or ``fused``."""
    if impl not in ("for_loop", "foreach", "fused"):
        raise ValueError(f"train.optimizer_impl={impl!r}: expected for_loop, foreach or fused")
    groups = [{"params": [p for p in policy.parameters() if p.requires_grad], "lr": c.lr}]
    if critic is not None:
        groups.append({"params": [p for p in critic.parameters() if p.requires_grad],
                       "lr": c.critic_lr or c.lr})
    return torch.optim.AdamW(groups, lr=c.lr, eps=c.adam_eps, weight_decay=c.weight_decay,
                             foreach=impl == "foreach", fused=True if impl == "fused" else None)


def lr_lambda(c: Any, total_optimizer_steps: int) -> Any:
    def factor(opt_step: int) -> float:
        if c.warmup_steps and opt_step < c.warmup_steps:
            return (opt_step + 1) / c.warmup_steps
        if c.lr_schedule == "constant":
            return 1.0
        span = max(1, total_optimizer_steps - c.warmup_steps)
        progress = min(1.0, (opt_step - c.warmup_steps) / span)
        if c.lr_schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class Updater:
    """Owns the optimizer and scheduler; runs one update per training step."""

    def __init__(self, *, algorithm: Algorithm[Any], spec: AlgorithmSpec,
                 policy: torch.nn.Module, critic: torch.nn.Module | None, tokenizer: Any,
                 device: torch.device, seed: int, total_steps: int, skip_nonfinite: bool,
                 autocast: AbstractContextManager[Any] | None = None,
                 dist: Any = None, optimizer_impl: str = "foreach") -> None:
        c = algorithm.config
        self.dist = dist  # rlkit.core.distributed.Dist, or None: one process
        self.algorithm, self.spec, self.c = algorithm, spec, c
        self.policy, self.critic, self.tokenizer, self.device = policy, critic, tokenizer, device
        self.seed, self.skip_nonfinite = seed, skip_nonfinite
        self.autocast = autocast or nullcontext()
        self.optimizer = make_optimizer(policy, critic, c, optimizer_impl)
        self.total_optimizer_steps = total_steps * c.epochs * c.num_minibatches
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(c, self.total_optimizer_steps))
        self.policy_params = list(self.optimizer.param_groups[0]["params"])
        self.critic_params = (list(self.optimizer.param_groups[1]["params"])
                              if critic is not None else [])

    # -- forwards ----------------------------------------------------------------------------
    def entropy_grad(self) -> bool:
        """Whether the loss can differentiate the entropy: not when the algorithm's entropy
        coefficient (``ent_coef``) is 0 — the term is then 0·H, whose gradient is 0, so the
        entropy is taken outside the graph (one log_softmax; bit-identical). An algorithm
        without an ``ent_coef`` keeps the entropy in the graph."""
        coef = getattr(self.c, "ent_coef", None)
        return not (isinstance(coef, (int, float)) and coef == 0)

    def policy_output(self, mb: Experience, temperature: float) -> PolicyOutput:
        values: Tensor | None
        with self.autocast:
            if fused_critic(self.policy, self.critic):
                logprobs, entropy, values = forward_response_and_values(
                    self.policy, self.critic, mb.input_ids, mb.attention_mask, mb.prompt_len,
                    temperature, entropy_grad=self.entropy_grad())
            else:
                logprobs, entropy = forward_response(
                    self.policy, mb.input_ids, mb.attention_mask, mb.prompt_len, temperature,
                    entropy_grad=self.entropy_grad(),
                )
                values = (forward_values(self.critic, mb.input_ids, mb.attention_mask,
                                         mb.prompt_len)
                          if self.critic is not None else None)
        assert entropy is not None
        return PolicyOutput(logprobs=logprobs * mb.response_mask, entropy=entropy, values=values)

    def lm_loss(self, texts: list[str]) -> Tensor:
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

    # -- the update --------------------------------------------------------------------------
    def _weight(self, mb: Experience) -> Tensor:
        """A micro-batch's share of its minibatch: the algorithm's own
        (:meth:`~rlkit.algorithm.Algorithm.loss_weight`), else the declared aggregation's."""
        own = self.algorithm.loss_weight(mb)
        if own is not None:
            return own.detach().float()
        if self.spec.loss_aggregation == "token_mean":
            return mb.response_mask.sum()
        return torch.tensor(float(len(mb)))

    def update(self, exp: Experience, step: int, temperature: float) -> dict[str, float]:
        """Groups (samples of one prompt, or one pair) are never split across minibatches or
        micro-batches. Each micro-batch's loss is weighted by its share of the minibatch's
        tokens (``token_mean``) or sequences (the other aggregations), so accumulation
        equals one big batch, and the logged loss is the minibatch's loss (metrics are weighted
        the same way). Under W data-parallel ranks a minibatch is split into
        max(grad_accum_steps, W) micro-batches, rank r taking every W-th from the r-th, and
        the gradients are summed across ranks: the step one process would take."""
        c = self.c
        self.policy.train()
        if self.critic is not None:
            self.critic.train()
        params = self.policy_params + self.critic_params
        groups = torch.unique(exp.group_ids)
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        norms: dict[str, list[float]] = {M.POLICY_GRAD_NORM: [], M.VALUE_GRAD_NORM: []}
        skipped = 0
        generator = torch.Generator().manual_seed(stream_seed(self.seed, step, 4))
        advantages = exp.advantages
        pending = exp.logprobs_pending  # old log-probs not scored yet
        for _epoch in range(c.epochs):
            order = groups[torch.randperm(len(groups), generator=generator).to(groups.device)]
            for mb_groups in torch.tensor_split(order, min(c.num_minibatches, len(order))):
                mb_index = torch.nonzero(torch.isin(exp.group_ids, mb_groups)).squeeze(1)
                whole = exp.select(mb_index)
                with torch.no_grad():
                    self.algorithm.prepare_minibatch(whole)
                # a loss_weight may be 0 for a whole minibatch (then every share is 0 too)
                mb_total = self._weight(whole).clamp(min=1e-12)
                bad: str | None = None
                rank, world = ((self.dist.rank, self.dist.world_size) if self.dist is not None
                               else (0, 1))
                parts = min(max(c.grad_accum_steps, world), len(mb_groups))
                for micro_groups in torch.tensor_split(mb_groups, parts)[rank::world]:
                    if parts == 1:  # the micro-batch is the minibatch: selected once
                        mb = whole
                    else:  # from the minibatch: the rows of exp, with what it prepared
                        micro = torch.nonzero(torch.isin(whole.group_ids, micro_groups))
                        mb = whole.select(micro.squeeze(1))
                    out = self.policy_output(mb, temperature)
                    if pending:  # the whole batch, weights not yet stepped: π_old = π_θ
                        assert len(mb) == len(exp)
                        exp.logprobs = mb.logprobs = out.logprobs.detach()
                        exp.logprobs_pending = False
                        pending = False
                    loss, metrics = self.algorithm.loss(mb, out)
                    if not torch.isfinite(loss):
                        terms = [k for k, v in metrics.items()
                                 if not math.isfinite(float(v))] or ["the total"]
                        bad = (f"the loss of algorithm '{self.algorithm.name}' "
                               f"(non-finite terms: {', '.join(terms)})")
                        break
                    share = self._weight(mb)
                    (loss * (share / mb_total)).backward()
                    # the loss and the algorithm's metrics are weighted like the loss itself
                    # (tokens or sequences: the declared aggregation), so the logged loss is
                    # the minibatch's whatever the micro-batches (and ranks) it was split into;
                    # the engine's ratio statistics are token means
                    tokens = float(mb.response_mask.sum())
                    for weight, part in (
                            (float(share), {**metrics, M.LOSS_TOTAL: loss.detach()}),
                            (tokens, ratio_stats(out.logprobs.detach(), mb.logprobs,
                                                 mb.response_mask,
                                                 None if advantages is None else mb.advantages,
                                                 self.spec.clip_range))):
                        for key, value in part.items():
                            sums[key] = sums.get(key, 0.0) + float(value) * weight
                            weights[key] = weights.get(key, 0.0) + weight
                if self.dist is not None:
                    bad = self.dist.first_error(bad)
                if bad is None:
                    bad = self._clip_and_step(params, norms)
                if bad is not None:
                    self.optimizer.zero_grad(set_to_none=True)
                    if not self.skip_nonfinite:
                        raise NonFiniteError(bad, "the optimizer step was not taken", step)
                    skipped += 1
        if self.dist is not None:
            sums, weights = self.dist.merge_sums(sums, weights)
        stats = {k: sums[k] / max(weights[k], 1e-12) for k in sums}
        for key, values in norms.items():
            if values:
                stats[key] = float(np.mean(values))
        stats[M.POLICY_LR] = self.optimizer.param_groups[0]["lr"]
        if self.skip_nonfinite:
            stats[M.NONFINITE_SKIPPED] = float(skipped)
        return stats

    def _clip_and_step(self, params: list[Tensor], norms: dict[str, list[float]]) -> str | None:
        """Joint clip over policy and critic (as before: the optimizer sees one gradient), the
        two norms logged apart; returns what was non-finite instead of stepping, if anything."""
        if self.dist is not None:
            self.dist.sum_gradients(params)
        policy_grads = [p.grad for p in self.policy_params if p.grad is not None]
        critic_grads = [p.grad for p in self.critic_params if p.grad is not None]
        total, policy_norm, critic_norm = _grad_norms(policy_grads, critic_grads)
        if not torch.isfinite(total):
            return "the gradient norm (a NaN or inf gradient)"
        norms[M.POLICY_GRAD_NORM].append(float(policy_norm))
        if self.critic_params:
            norms[M.VALUE_GRAD_NORM].append(float(critic_norm))
        max_norm = self.c.max_grad_norm if self.c.max_grad_norm is not None else float("inf")
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return None


def _grad_norms(policy: list[Tensor], critic: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """The L2 norms of all, the policy's and the critic's gradients — each exactly what
    ``torch.nn.utils.get_total_norm`` returns for that list (the norm of the per-tensor norms,
    in order) — from one pass over the per-tensor norms instead of three."""
    grads = policy + critic
    if not grads:
        zero = torch.tensor(0.0)
        return zero, zero, zero
    first = grads[0]
    if any(g.device != first.device or g.dtype != first.dtype for g in grads):
        # mixed devices or dtypes: get_total_norm regroups them, so ask it for each list
        total = torch.nn.utils.get_total_norm(grads)
        return (total, torch.nn.utils.get_total_norm(policy) if critic else total,
                torch.nn.utils.get_total_norm(critic))
    per_tensor = (torch._foreach_norm(grads, 2.0) if first.device.type in ("cpu", "cuda")
                  else [torch.linalg.vector_norm(g, 2.0) for g in grads])

    def norm_of(parts: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        return (torch.linalg.vector_norm(torch.stack(list(parts)), 2.0) if parts
                else torch.tensor(0.0))

    total = norm_of(per_tensor)
    if not critic:
        return total, total, torch.tensor(0.0)
    return total, norm_of(per_tensor[:len(policy)]), norm_of(per_tensor[len(policy):])


def explained_variance_of(exp: Experience) -> float | None:
    from rlkit.ops import explained_variance

    if exp.values is None or exp.returns is None:
        return None
    ev = explained_variance(exp.values, exp.returns, exp.response_mask)
    return ev if math.isfinite(ev) else None  # undefined when every return is equal


__all__ = ["Updater", "explained_variance_of", "lr_lambda", "make_optimizer", "masked_mean"]
