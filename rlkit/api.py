"""The plugin API: everything a plugin may import, in one place. Nothing else is API.

Algorithms, tasks, reward sources, generation backends, data kinds and lifecycle hooks see
the engine only through :class:`RunContext`: the run's configuration, tokenizer and task, the
step counters, and a few services. The engine's objects themselves are not handed out, so
they can change without breaking a plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rlkit.algorithm import (
    LOSS_AGGREGATIONS,
    Algorithm,
    AlgorithmConfig,
    AlgorithmSpec,
    CriticConfig,
    Experience,
    LossAggregation,
    PolicyOutput,
    doc,
)
from rlkit.errors import ConfigError, DataError, PluginError, RlkitError
from rlkit.hookspecs import hookimpl
from rlkit.metrics import MetricInfo

if TYPE_CHECKING:
    from rlkit.config import RunConfig
    from rlkit.tasks.base import Task


@dataclass
class EvalSamples:
    """What the last evaluation generated and scored (for ``rlkit_evaluate`` plugins)."""

    step: int
    prompts: list[str]
    metadata: list[dict[str, Any]]
    responses: list[str]
    rewards: list[float]
    gold: list[float] | None = None
    k: int = 1  # samples per prompt: responses[i*k:(i+1)*k] answer prompts[i]


@dataclass
class RunContext:
    """The declared view of one run that plugins receive.

    Attributes are read-only by convention; services are the methods below. ``config`` is the
    validated run config, ``algorithm_config`` the algorithm's own Config instance.
    """

    config: RunConfig
    algorithm_config: AlgorithmConfig
    spec: AlgorithmSpec
    tokenizer: Any
    task: Task | None
    device: torch.device
    run_dir: Path
    total_steps: int
    _services: Any = field(repr=False)
    last_eval: EvalSamples | None = None

    @property
    def step(self) -> int:
        """Training steps finished so far (0 before the first update)."""
        return int(self._services.step)

    @property
    def rank(self) -> int:
        """This process's rank among the run's data-parallel processes (0 in one process).
        Every rank calls the hooks with the same (gathered) data; only rank 0 should write."""
        dist = getattr(self._services, "dist", None)
        return 0 if dist is None else int(dist.rank)

    @property
    def world_size(self) -> int:
        """How many processes run this run (``torchrun --nproc_per_node``; 1 by default)."""
        dist = getattr(self._services, "dist", None)
        return 1 if dist is None else int(dist.world_size)

    def seed_for(self, purpose: int) -> int:
        """A reproducible seed for this run, step and purpose (an int ≥ 10 chosen by the
        plugin): a resumed run redraws exactly what an uninterrupted one drew."""
        return int(self._services.seed_for(purpose))

    def policy_logprobs(self, batch: Experience, *, grad: bool = False) -> Tensor:
        """log π_θ(a_t|s_t) of ``batch``'s responses at the sampling temperature, [N, R],
        masked; without gradients unless ``grad``."""
        return self._services.policy_logprobs(batch, grad)

    def reference_logprobs(self, batch: Experience) -> Tensor:
        """log π_ref(a_t|s_t) of ``batch``'s responses, [N, R], masked (no gradients); an
        error when the algorithm declared ``needs_reference = False``."""
        return self._services.reference_logprobs(batch)

    def lm_loss(self, texts: list[str]) -> Tensor:
        """Mean next-token loss of the policy on ``texts`` + EOS, with gradients (PPO-ptx)."""
        return self._services.lm_loss(texts)

    def tokenize_responses(self, prompts: list[str], responses: list[str]) -> Experience:
        """Prompt/response texts as an :class:`Experience` layout (ids, masks; log-prob fields
        zero), e.g. for a data kind that brings its own texts."""
        return self._services.tokenize(prompts, responses)


def run(config: str | Path | dict[str, Any], *overrides: str, out: str | Path | None = None,
        resume: bool = False, plugins: tuple[str, ...] = ()) -> dict[str, float]:
    """Train one run from a config file (or mapping) with ``KEY=VALUE`` overrides; returns the
    final metric row. ``rlkit.run("experiments/smoke.yaml", "algorithm.name=ppo_clip")``."""
    from rlkit.config import load_config
    from rlkit.core.run import Run
    from rlkit.plugins import make_plugin_manager

    pm = make_plugin_manager(plugins)
    path, data = (None, config) if isinstance(config, dict) else (config, None)
    cfg = load_config(path, list(overrides), data=data, algorithms=pm.registry.algorithms)
    return Run(cfg, out=out, resume=resume, pm=pm).train()


def compare(experiment: str | Path, *overrides: str, out: str | Path | None = None,
            workers: int = 1, executor: str = "local", report: bool = True) -> Path:
    """Run an experiment grid (resumable) and write its report; returns the output directory."""
    from rlkit.compare.api import compare as _compare

    return _compare(experiment, list(overrides), out=out, workers=workers, executor=executor,
                    report=report)


def report(directory: str | Path, *, wandb: bool = False) -> Any:
    """Read an experiment directory and write ``report.md``/``report.html``; returns the
    summary (per-algorithm statistics) for use in a notebook."""
    from rlkit.compare.api import report as _report

    return _report(directory, wandb=wandb)


__all__ = [
    "LOSS_AGGREGATIONS", "Algorithm", "AlgorithmConfig", "AlgorithmSpec", "ConfigError",
    "CriticConfig", "DataError", "EvalSamples", "Experience", "LossAggregation", "MetricInfo",
    "PluginError", "PolicyOutput", "RlkitError", "RunContext", "compare", "doc", "hookimpl",
    "report", "run",
]
