"""The built-in verifiable-reward world, registered as the task ``arithmetic``.

Addition and subtraction problems with one checkable answer carried as prompt metadata
(``problems``), an exact-match reward registered as ``arithmetic_exact`` (and
``arithmetic_exact_format`` with a small bonus for form), and a tiny SFT policy that is
sometimes right (``build``), cached per option set (``task``).
"""

from __future__ import annotations

from collections.abc import Callable

from rlkit.hookspecs import hookimpl
from rlkit.tasks.arithmetic.problems import (
    Problem,
    exact_scores,
    extract_answer,
    is_correct,
    is_well_formed,
    parse_prompt,
)
from rlkit.tasks.arithmetic.task import (
    EXACT_FORMAT_REWARD,
    EXACT_REWARD,
    ArithmeticTask,
    arithmetic_exact,
    arithmetic_exact_format,
    format_prepare_report,
)

__all__ = [
    "EXACT_FORMAT_REWARD",
    "EXACT_REWARD",
    "ArithmeticTask",
    "Problem",
    "arithmetic_exact",
    "arithmetic_exact_format",
    "exact_scores",
    "extract_answer",
    "format_prepare_report",
    "is_correct",
    "is_well_formed",
    "parse_prompt",
]


@hookimpl
def rlkit_register_tasks(register: Callable[[type], None]) -> None:
    """Register :class:`ArithmeticTask` under its name, ``arithmetic``."""
    register(ArithmeticTask)


@hookimpl
def rlkit_register_rewards(register: Callable[[str, Callable[..., list[float]]], None]) -> None:
    """Register the exact-match rewards (TRL convention: the ``answer`` column arrives as a
    keyword argument)."""
    register(EXACT_REWARD, arithmetic_exact)
    register(EXACT_FORMAT_REWARD, arithmetic_exact_format)
