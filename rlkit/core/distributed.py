"""One run over several processes: data-parallel rollout and update under ``torchrun``.

``torchrun --nproc_per_node N -m rlkit run CONFIG`` (or ``rlkit run --nproc N CONFIG``) starts
N ranks of the same run. Each rank samples and scores a contiguous slice of the step's global
batch (``rollout.batch_size`` prompts), drawing exactly the random numbers one process would
draw for those rows (:func:`rlkit.rollout.sample`). The scored slices are then gathered, so
every rank holds the global batch: ``algorithm.prepare`` (batch whitening, baselines) and
every metric see what one process sees. Each minibatch is split into micro-batches across
ranks; gradients are summed across ranks before clipping and the optimizer step, so every
rank takes the same step one process would. Only rank 0 writes (logs, samples, checkpoints,
wandb, the final policy). Gloo on CPU (CI runs it), NCCL on GPU.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rlkit.algorithm import Experience
from rlkit.core.experience import RolloutInfo


class Dist:
    """This process's place in the run: rank, world size, and the collectives the engine uses.
    With one process every method is a no-op (or the identity), so the engine has one path."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> Dist:
        """The process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_*);
        one process when WORLD_SIZE is unset or 1."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))

    # -- splitting -------------------------------------------------------------------------
    def span(self, n: int) -> tuple[int, int]:
        """This rank's contiguous slice [start, stop) of n items (sizes differ by at most 1)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (self.rank < extra)

    # -- collectives -----------------------------------------------------------------------
    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def broadcast_module(self, module: torch.nn.Module | None) -> None:
        """Rank 0's weights on every rank (they already agree when built from one seed)."""
        if not self.active or module is None:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, 0)

    def sum_gradients(self, params: list[Tensor]) -> None:
        """Σ over ranks of every gradient, in one flat all-reduce. A parameter with no gradient
        on every rank keeps ``grad = None`` (AdamW then skips it, as one process would)."""
        if not self.active or not params:
            return
        import torch.distributed as dist

        device = params[0].device
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                           device=device)
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        live = [p for p, h in zip(params, has.tolist()) if h]
        for p in live:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not live:
            return
        grads = [p.grad for p in live if p.grad is not None]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n

    def first_error(self, error: str | None) -> str | None:
        """The first rank's error, if any rank has one (all ranks then skip or stop alike)."""
        if not self.active:
            return error
        return next((e for e in self.all_gather_object(error) if e is not None), None)

    def merge_sums(self, sums: dict[str, float], weights: dict[str, float]) -> tuple[
            dict[str, float], dict[str, float]]:
        """Add every rank's weighted metric sums and weights (keys may differ by rank)."""
        if not self.active:
            return sums, weights
        total_s: dict[str, float] = {}
        total_w: dict[str, float] = {}
        for s, w in self.all_gather_object((sums, weights)):
            for key, value in s.items():
                total_s[key] = total_s.get(key, 0.0) + value
                total_w[key] = total_w.get(key, 0.0) + w[key]
        return total_s, total_w

    def max_of(self, values: dict[str, float]) -> dict[str, float]:
        """The per-key maximum over ranks (step times, peak memory per device)."""
        if not self.active:
            return values
        gathered = self.all_gather_object(values)
        return {k: max(float(g[k]) for g in gathered if k in g) for k in values}

    def gather_batch(self, exp: Experience, info: RolloutInfo, pad_id: int,
                     device: torch.device) -> tuple[Experience, RolloutInfo]:
        """Every rank's slice, concatenated in rank order: the global batch, laid out as one
        process lays it out (prompts left-padded to the longest, responses right-padded)."""
        if not self.active:
            return exp, info
        local = (_to_cpu_exp(exp), _to_cpu_info(info))
        parts = self.all_gather_object(local)
        merged = concat_experience([p[0] for p in parts], pad_id)
        return merged._map(lambda t: t.to(device)), concat_info([p[1] for p in parts],
                                                               device)


def _to_cpu_exp(exp: Experience) -> Experience:
    return exp._map(lambda t: t.detach().cpu())


def _to_cpu_info(info: RolloutInfo) -> RolloutInfo:
    values = {}
    for f in dataclasses.fields(info):
        v = getattr(info, f.name)
        if isinstance(v, Tensor):
            v = v.detach().cpu()
        elif isinstance(v, dict):
            v = {k: t.detach().cpu() if isinstance(t, Tensor) else t for k, t in v.items()}
        values[f.name] = v
    return RolloutInfo(**values)


def _pad_tokens(t: Tensor | None, width: int, value: float = 0) -> Tensor | None:
    """Right-pad a per-token [N, R] tensor to R = ``width``."""
    if t is None or t.dim() < 2 or t.shape[1] == width:
        return t
    return F.pad(t, (0, width - t.shape[1]), value=value)


def concat_experience(parts: list[Experience], pad_id: int) -> Experience:
    """Experiences of the same kind as one: prompt parts left-padded to the longest prompt,
    per-token tensors right-padded to the longest response; group ids made globally unique."""
    prompt_len = max(e.prompt_len for e in parts)
    width = max(e.response_mask.shape[1] for e in parts)
    offset = 0
    columns: dict[str, list[Any]] = {}
    for e in parts:
        left, right = prompt_len - e.prompt_len, width - e.response_mask.shape[1]
        row: dict[str, Any] = {}
        for f in dataclasses.fields(e):
            v = getattr(e, f.name)
            r = e.response_mask.shape[1]
            if f.name == "input_ids":
                v = F.pad(v, (left, right), value=pad_id)
            elif f.name == "attention_mask":
                v = F.pad(v, (left, right), value=0)
            elif f.name == "group_ids":
                v = v + offset
            elif f.name == "extras":
                v = {k: _pad_tokens(t, width) if t.dim() >= 2 and t.shape[1] == r else t
                     for k, t in v.items()}
            elif isinstance(v, Tensor) and v.dim() >= 2 and v.shape[1] == r:
                v = _pad_tokens(v, width)
            row[f.name] = v
        if len(e):
            offset = int(row["group_ids"].max()) + 1
        for key, value in row.items():
            columns.setdefault(key, []).append(value)
    merged: dict[str, Any] = {}
    for key, values in columns.items():
        first = values[0]
        if key == "prompt_len":
            merged[key] = prompt_len
        elif isinstance(first, Tensor):
            merged[key] = torch.cat(values)
        elif first is None:
            merged[key] = None
        elif isinstance(first, dict):
            merged[key] = {k: torch.cat([v[k] for v in values]) for k in first}
        else:
            merged[key] = first
    return Experience(**merged)


def concat_info(parts: list[RolloutInfo], device: torch.device) -> RolloutInfo:
    """What every rank measured beside its slice, as one process measures it."""
    width = max((p.entropy.shape[1] for p in parts if p.entropy is not None), default=0)
    width = max([width] + [p.sampler_logprobs.shape[1] for p in parts
                           if p.sampler_logprobs is not None])

    def cat(name: str) -> Tensor | None:
        values: list[Tensor | None] = [getattr(p, name) for p in parts]
        if any(v is None for v in values):
            return None
        return torch.cat([_pad_tokens(v, width) if v.dim() >= 2 else v  # type: ignore[misc]
                          for v in values if v is not None]).to(device)

    def cat_required(name: str) -> Tensor:
        value = cat(name)
        assert value is not None
        return value

    first = parts[0]
    gold = (None if any(p.gold is None for p in parts)
            else [g for p in parts for g in (p.gold or [])])
    return RolloutInfo(
        raw_scores=cat_required("raw_scores"), responses=[r for p in parts for r in p.responses],
        ended=cat_required("ended"), entropy=cat("entropy"), gold=gold,
        per_source={k: torch.cat([p.per_source[k] for p in parts]) for k in first.per_source},
        sampler_logprobs=cat("sampler_logprobs"), prompts=[x for p in parts for x in p.prompts],
        metadata=[m for p in parts for m in p.metadata],
        truncated=sum(p.truncated for p in parts), is_rollout=first.is_rollout,
        n_samples=(None if any(p.n_samples is None for p in parts)
                   else sum(p.n_samples or 0 for p in parts)),
        penalized_scores=cat("penalized_scores"))


__all__ = ["Dist", "concat_experience", "concat_info"]
