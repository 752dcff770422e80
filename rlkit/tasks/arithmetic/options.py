"""The options of the arithmetic world (``task.options`` in a run config), validated.

Every option changes what gets built, so all of them (defaults included) go into the hash
that names the cache directory: two runs with equal options share one build.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rlkit.errors import ConfigError
from rlkit.tasks.base import checked_options


def _opt(default: Any, help: str, *, low: float | None = None, high: float | None = None) -> Any:
    """A dataclass field carrying its help text and inclusive bounds."""
    return field(default=default, metadata={"help": help, "low": low, "high": high})


@dataclass(frozen=True)
class ArithmeticOptions:
    """Difficulty, sizes and knobs of the arithmetic world; the defaults build in well under
    a minute on two CPU cores and give an SFT policy that is right about a third of the time
    when sampled."""

    seed: int = _opt(0, "Seed of everything: problems, demonstrations, model, samples.", low=0)
    digits: int = _opt(2, "Digits of every number in a problem (difficulty).", low=1, high=6)
    terms: int = _opt(
        2, "Numbers per problem: 2 is one addition or subtraction, more is a chain.", low=2, high=5
    )
    train_prompts: int = _opt(1024, "Distinct training problems (RL prompts).", low=1)
    eval_prompts: int = _opt(
        256, "Distinct held-out problems, in no training set (SFT included).", low=1
    )
    corpus_size: int = _opt(40000, "Correct worked answers the SFT policy learns from.", low=1)
    easy_fraction: float = _opt(
        0.3,
        "Fraction of SFT demonstrations with fewer digits (a curriculum that makes carrying "
        "learnable in fewer steps).",
        low=0.0,
        high=1.0,
    )
    answer_noise: float = _opt(
        0.35,
        "Fraction of the careless-phase demonstrations whose final digit is wrong: how often "
        "the SFT policy slips.",
        low=0.0,
        high=1.0,
    )
    sft_steps: int = _opt(1200, "SFT steps on correct worked answers.", low=1)
    sft_lr: float = _opt(3e-3, "SFT peak learning rate.", low=0.0)
    careless_steps: int = _opt(
        400, "Steps on demonstrations with slips after SFT (0: a careful policy).", low=0
    )
    careless_lr: float = _opt(3e-4, "Learning rate of the careless phase.", low=0.0)
    batch_size: int = _opt(64, "Demonstrations per step.", low=1)
    policy_layers: int = _opt(2, "Transformer layers of the SFT policy.", low=1)
    policy_width: int = _opt(64, "Embedding width of the SFT policy.", low=1)
    # 8 heads of width 8 break the plateau before a tiny model learns to carry several
    # hundred steps sooner than 4 of width 16, and far more reliably across seeds.
    policy_heads: int = _opt(8, "Attention heads of the SFT policy.", low=1)
    format_reward: bool = _opt(
        False,
        "Add a small bonus (0.1) for a well-formed worked answer to the task's reward "
        "(the gold reward stays correctness alone).",
    )

    def digest(self) -> str:
        """Short hash of every option: the cache key beside the version and the seed."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def option_docs() -> list[tuple[str, Any, str]]:
    """(name, default, help) of every option, for docs and error messages."""
    return [(f.name, f.default, f.metadata["help"]) for f in dataclasses.fields(ArithmeticOptions)]


def describe_options() -> str:
    """``name (default X)`` per option: short enough for an error message."""
    return "; ".join(f"{name} (default {default!r})" for name, default, _ in option_docs())


def _check_value(f: dataclasses.Field, value: Any) -> Any:
    where = f"Task 'arithmetic' option '{f.name}'"
    if isinstance(f.default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}.")
        return value
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a number, not {value!r}.")
    if isinstance(f.default, int):
        if not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}.")
    elif not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number, got {value!r}.")
    else:
        value = float(value)
    low, high = f.metadata["low"], f.metadata["high"]
    if low is not None and value < low:
        raise ConfigError(f"{where} must be ≥ {low}, got {value!r}.")
    if high is not None and value > high:
        raise ConfigError(f"{where} must be ≤ {high}, got {value!r}.")
    if f.name in ("sft_lr", "careless_lr") and value == 0:
        raise ConfigError(f"{where} must be > 0.")
    return value


def parse_options(options: Mapping[str, Any]) -> ArithmeticOptions:
    """Validated options; ConfigError names the bad key and lists the valid ones."""
    parsed = ArithmeticOptions(**checked_options(options, ArithmeticOptions, "arithmetic", describe_options(),
                                      _check_value))
    if parsed.policy_width % parsed.policy_heads:
        raise ConfigError(
            f"Task 'arithmetic' option 'policy_width' ({parsed.policy_width}) must be a "
            f"multiple of 'policy_heads' ({parsed.policy_heads})."
        )
    return parsed
