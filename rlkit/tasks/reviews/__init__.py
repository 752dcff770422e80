"""The built-in review world, registered as the task ``reviews``.

Positive-sentiment RLHF on a CPU: a grammar of movie reviews (``grammar``), its exact
sentiment as the gold reward (``gold``), and a tiny SFT policy, reward model and preference
set built from them (``build``), cached per option set (``task``).
"""

from __future__ import annotations

from collections.abc import Callable

from rlkit.hookspecs import hookimpl
from rlkit.tasks.reviews.gold import GOLD_INVALID, gold_reward, parse_review, review_gold
from rlkit.tasks.reviews.task import ReviewsTask, format_prepare_report

__all__ = [
    "GOLD_INVALID",
    "ReviewsTask",
    "format_prepare_report",
    "gold_reward",
    "parse_review",
    "review_gold",
]


@hookimpl
def rlkit_register_tasks(register: Callable[[type], None]) -> None:
    """Register :class:`ReviewsTask` under its name, ``reviews``."""
    register(ReviewsTask)
