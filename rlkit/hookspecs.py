"""Every rlkit hook, typed, one docstring each.

Registration hooks hand plugins a ``register`` callback; the core owns the registries, so
lookups are by name and a duplicate name is an error naming both plugins. Lifecycle hooks
are observers (every implementation is called). Algorithm math never lives on a hook: a
list hook would call every algorithm; it lives on the classes registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from rlkit.algorithm import Algorithm
    from rlkit.api import RunContext
    from rlkit.backends import GenerationBackend
    from rlkit.core.datakinds import DataKind
    from rlkit.metrics import MetricInfo
    from rlkit.tasks.base import Task
    from rlkit.tracking.base import Tracker

hookspec = pluggy.HookspecMarker("rlkit")
hookimpl = pluggy.HookimplMarker("rlkit")

# --------------------------------------------------------------------------------------------
# registration: every plugin is called once when the registries are built
# --------------------------------------------------------------------------------------------


@hookspec
def rlkit_register_algorithms(register: Callable[[type[Algorithm]], None]) -> None:
    """Register algorithm classes.

    :param register: ``register(MyAlgorithm)``; the class's ``name`` is its key. The class is
        validated then (a subclass of :class:`rlkit.Algorithm`, a dataclass ``Config`` with
        defaults, a valid :class:`rlkit.AlgorithmSpec`); a failure names the plugin.
    :returns: nothing. Fires once per plugin manager, when the registries are first read.
    """


@hookspec
def rlkit_register_tasks(register: Callable[[type[Task]], None]) -> None:
    """Register task classes (prompts with metadata, starting models, gold reward).

    :param register: ``register(MyTask)``; the class's ``name`` is the key of ``task.name``.
    """


@hookspec
def rlkit_register_rewards(register: Callable[..., None]) -> None:
    """Register reward sources by name (the key of ``reward.model`` or ``reward[*].source``).

    :param register: ``register(name, obj)`` where ``obj`` is either a reward *function*
        ``fn(prompts, responses, **columns) -> list[float]`` (TRL's convention: every metadata
        column of the prompt file arrives as a keyword argument holding one value per
        response; a two-argument ``fn(prompts, responses)`` keeps working), or a
        :class:`rlkit.RewardSource` subclass, built once per run as ``cls(ctx, options)`` and
        called with prompts, responses and metadata (per-token rewards allowed).
    """


@hookspec
def rlkit_register_backends(register: Callable[[type[GenerationBackend]], None]) -> None:
    """Register generation backends (the key of ``rollout.backend``).

    :param register: ``register(MyBackend)``, a :class:`rlkit.GenerationBackend` subclass
        whose ``name`` is its key. The built-in ``hf`` backend is the KV-cached sampler. The
        engine calls ``backend.sync_weights(policy)`` after every update, and logs the
        train–rollout log-prob mismatch from the log-probs the backend returns.
    """


@hookspec
def rlkit_register_data_kinds(register: Callable[[type[DataKind]], None]) -> None:
    """Register data kinds: where an algorithm's batches come from (``AlgorithmSpec.data_kind``).

    :param register: ``register(MyKind)``, a :class:`rlkit.DataKind` subclass. Built-ins:
        ``rollout`` (k samples per prompt), ``preferences`` (pairs from a file),
        ``unpaired`` (desirable/undesirable responses) and ``judged_pairs`` (two fresh samples
        per prompt ordered by the reward).
    """


@hookspec
def rlkit_register_metrics(register: Callable[[MetricInfo], None]) -> None:
    """Declare metrics a plugin logs: ``register(MetricInfo("eval/pass_rate", "Pass rate",
    "fraction", goal="max", eval=True))``. A declared ``eval/`` metric with a goal is ranked in
    the report beside the canonical ones; a canonical name cannot be redeclared.
    """


@hookspec
def rlkit_register_trackers(register: Callable[[str, type[Tracker]], None]) -> None:
    """Register metric sinks by name: ``register("jsonl", JsonlTracker)``."""


@hookspec
def rlkit_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``rlkit`` command-line group (``cli.add_command(...)``)."""


# --------------------------------------------------------------------------------------------
# resolution: the first plugin that recognises the spec answers
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def rlkit_load_model(spec: Any, role: str, run_config: Any) -> Any | None:
    """Load the model for ``spec`` in ``role``.

    :param spec: a hub id, a local directory, or anything a plugin recognises.
    :param role: ``"policy"`` (a causal LM), ``"reward"`` (a sequence classifier) or
        ``"critic"`` (a model whose ``base_model`` trunk gets a value head; from
        ``critic.model``).
    :param run_config: the validated :class:`rlkit.config.RunConfig`.
    :returns: ``(model, tokenizer)``, or ``None`` to pass. Stops at the first non-None
        result; the built-in Hugging Face loader runs last, so a plugin can take over a spec.
    """


# --------------------------------------------------------------------------------------------
# run lifecycle: observers. Each receives the run's RunContext, never the engine itself.
# --------------------------------------------------------------------------------------------


@hookspec
def rlkit_run_start(ctx: RunContext) -> None:
    """After models, algorithm and trackers are ready, before the first step (and again on
    resume, with ``ctx.step`` at the checkpoint)."""


@hookspec
def rlkit_after_update(ctx: RunContext, step: int,
                       metrics: dict[str, float]) -> dict[str, float] | None:
    """After each training step's update.

    :param step: the step just finished (1-based). :param metrics: the step's row so far.
    :returns: extra metrics to merge into the row (declare them with
        ``rlkit_register_metrics`` to give them a title and a direction), or ``None``.
    """


@hookspec
def rlkit_evaluate(ctx: RunContext, step: int) -> dict[str, float] | None:
    """When the engine evaluates (step 0, every ``eval.every`` steps and the last step).

    :returns: extra ``eval/*`` metrics for the row, or ``None``. ``ctx.last_eval`` holds the
        evaluation's prompts, metadata, responses and rewards.
    """


@hookspec
def rlkit_run_end(ctx: RunContext, summary: dict[str, float]) -> None:
    """After the last step, before trackers close; ``summary`` is the final metric row."""
