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
    from rlkit.engine import Run
    from rlkit.tasks.base import Task
    from rlkit.tracking.base import Tracker

hookspec = pluggy.HookspecMarker("rlkit")
hookimpl = pluggy.HookimplMarker("rlkit")

# --------------------------------------------------------------------------------------------
# registration: every plugin is called once when the registries are built
# --------------------------------------------------------------------------------------------


@hookspec
def rlkit_register_algorithms(register: Callable[[type[Algorithm]], None]) -> None:
    """Register algorithm classes: ``register(MyAlgorithm)``; the class's ``name`` is its key."""


@hookspec
def rlkit_register_tasks(register: Callable[[type[Task]], None]) -> None:
    """Register task classes (prompts, starting models, gold reward): ``register(MyTask)``."""


@hookspec
def rlkit_register_rewards(register: Callable[[str, Callable[..., list[float]]], None]) -> None:
    """Register reward functions: ``register(name, fn)`` with
    ``fn(prompts: list[str], responses: list[str]) -> list[float]``."""


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
    """Load the model for ``spec`` in ``role`` ("policy", "reward" or "critic"); return
    ``(model, tokenizer)`` or ``None`` to pass. Stops at the first non-None result; the
    built-in Hugging Face loader runs last, so a plugin can take over any spec."""


# --------------------------------------------------------------------------------------------
# run lifecycle: observers
# --------------------------------------------------------------------------------------------


@hookspec
def rlkit_run_start(run: Run) -> None:
    """After models, algorithm and trackers are ready, before the first step."""


@hookspec
def rlkit_after_update(run: Run, step: int, metrics: dict[str, float]) -> dict[str, float] | None:
    """After each training step's update; return extra metrics to merge into the step's row."""


@hookspec
def rlkit_evaluate(run: Run, step: int) -> dict[str, float] | None:
    """When the engine evaluates (every ``eval.every`` steps); return extra ``eval/*`` metrics."""


@hookspec
def rlkit_run_end(run: Run, summary: dict[str, float]) -> None:
    """After the last step, before trackers close; ``summary`` is the final metric row."""
