"""The options of the review world (``task.options`` in a run config), validated.

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

#: Values of the ``preference_pairs`` option.
PREFERENCE_CHOICES = ("small", "rich")
#: SFT samples per training prompt when ``preference_pairs`` is ``rich``.
RICH_SAMPLES_PER_PROMPT = 5


def _opt(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field carrying its help text and bounds (open bounds are exclusive), or
    the allowed values of a string option."""
    meta = {
        "help": help,
        "low": low,
        "high": high,
        "open_low": open_low,
        "open_high": open_high,
        "choices": choices,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ReviewsOptions:
    """Sizes and knobs of the built-in review world; the defaults build in well under a
    minute on two CPU cores."""

    seed: int = _opt(0, "Seed of everything: corpus, prompts, models, samples.", low=0)
    label_noise: float = _opt(
        0.1,
        "Probability that a reward-model training pair has its gold label flipped.",
        low=0.0,
        high=0.5,
        open_high=True,
    )
    corpus_size: int = _opt(20000, "Generated reviews the SFT policy is trained on.", low=1)
    heldout_size: int = _opt(1000, "Held-out reviews for perplexity and RM accuracy.", low=1)
    # The grammar has about 5000 distinct openings outside the evaluation split, 1300 in it.
    train_prompts: int = _opt(512, "Distinct training prompts (review openings).", low=1, high=4000)
    eval_prompts: int = _opt(
        128, "Distinct evaluation prompts, disjoint from training.", low=1, high=1000
    )
    rm_pairs: int = _opt(20000, "Preference pairs (gold-labelled, noisy) for the RM.", low=1)
    policy_layers: int = _opt(2, "Transformer layers of the SFT policy.", low=1)
    policy_width: int = _opt(64, "Embedding width of the SFT policy.", low=1)
    policy_heads: int = _opt(4, "Attention heads of the SFT policy.", low=1)
    rm_from_sft: bool = _opt(
        True,
        "Start the reward model from the SFT policy's weights (as InstructGPT does); "
        "false: from scratch with the rm_* sizes.",
    )
    rm_layers: int = _opt(2, "Transformer layers of a from-scratch reward model.", low=1)
    rm_width: int = _opt(64, "Embedding width of a from-scratch reward model.", low=1)
    rm_heads: int = _opt(4, "Attention heads of a from-scratch reward model.", low=1)
    rm_group_size: int = _opt(
        8, "Reviews per opening in RM training data, all pairs of them labelled.", low=2
    )
    sft_steps: int = _opt(400, "SFT optimisation steps.", low=1)
    sft_lr: float = _opt(5e-3, "SFT peak learning rate.", low=0.0, open_low=True)
    rm_steps: int = _opt(500, "Reward-model optimisation steps.", low=1)
    rm_lr: float = _opt(3e-3, "Reward-model peak learning rate.", low=0.0, open_low=True)
    batch_size: int = _opt(64, "Texts per SFT step.", low=1)
    rm_batch_size: int = _opt(256, "Pairs per reward-model step.", low=1)
    preference_pairs: str = _opt(
        "small",
        "Offline preference data. small: two SFT samples per training prompt ranked by the "
        "reward model (a few hundred pairs). rich: as the DPO paper built them for IMDb, "
        f"{RICH_SAMPLES_PER_PROMPT} SFT samples per training prompt and every pair of them "
        "ordered by the gold reward, ties dropped (thousands of pairs), plus an unpaired "
        "desirable/undesirable file derived from them.",
        choices=PREFERENCE_CHOICES,
    )

    def digest(self) -> str:
        """Short hash of every option: the cache key beside the version and the seed."""
        blob = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def as_dict(self) -> dict[str, Any]:
        """Every option, except options added after the first release while they hold their
        defaults: so the default world keeps its cache key and its ``options.json``."""
        values = dataclasses.asdict(self)
        for name, default in _LATER_OPTIONS.items():
            if values[name] == default:
                del values[name]
        return values


#: Options added after worlds were already cached, with the default that leaves a world as it was.
_LATER_OPTIONS: dict[str, Any] = {"preference_pairs": "small"}


def option_docs() -> list[tuple[str, Any, str]]:
    """(name, default, help) of every option, for docs and ``--help`` texts."""
    return [(f.name, f.default, f.metadata["help"]) for f in dataclasses.fields(ReviewsOptions)]


def describe_options() -> str:
    """``name (default X)`` per option: short enough for an error message."""
    return "; ".join(f"{name} (default {default!r})" for name, default, _ in option_docs())


def _check_value(f: dataclasses.Field, value: Any) -> Any:
    meta = f.metadata
    where = f"Task 'reviews' option '{f.name}'"
    if meta["choices"] is not None:
        if value not in meta["choices"]:
            raise ConfigError(
                f"{where} must be one of {', '.join(meta['choices'])}, got {value!r}."
            )
        return value
    if isinstance(f.default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}.")
        return value
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a number, not {value!r}.")
    if isinstance(f.default, int):
        if not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}.")
    elif isinstance(f.default, float):
        if not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}.")
        value = float(value)
    low, high = meta["low"], meta["high"]
    if low is not None and (value <= low if meta["open_low"] else value < low):
        raise ConfigError(
            f"{where} must be {'>' if meta['open_low'] else '≥'} {low}, got {value!r}."
        )
    if high is not None and (value >= high if meta["open_high"] else value > high):
        raise ConfigError(
            f"{where} must be {'<' if meta['open_high'] else '≤'} {high}, got {value!r}."
        )
    return value


def parse_options(options: Mapping[str, Any]) -> ReviewsOptions:
    """Validated options; ConfigError names the bad key and lists the valid ones."""
    parsed = ReviewsOptions(**checked_options(options, ReviewsOptions, "reviews", describe_options(),
                                      _check_value))
    for prefix in ("policy", "rm"):
        width, heads = getattr(parsed, f"{prefix}_width"), getattr(parsed, f"{prefix}_heads")
        if width % heads:
            raise ConfigError(
                f"Task 'reviews' options '{prefix}_width' ({width}) must be a multiple of "
                f"'{prefix}_heads' ({heads})."
            )
    return parsed
