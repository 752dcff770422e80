"""User-facing errors: one paragraph that names the problem, printed without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RlkitError(Exception):
    """An error the user can act on (bad config, bad data, unknown name).

    The CLI prints ``str(error)`` alone, with no traceback, and exits with status 2.
    """


class ConfigError(RlkitError):
    """The run or experiment configuration is invalid."""


class DataError(RlkitError):
    """A prompt, preference or text file cannot be used."""


class PluginError(RlkitError):
    """A plugin failed to load or registered something invalid."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> RlkitError:
    """An error for an unknown registered name that lists the valid ones."""
    known = sorted(known)
    listing = ", ".join(known) if known else "(none registered)"
    return RlkitError(
        f"Unknown {kind} '{name}'.{did_you_mean(name, known)} Known {kind}s: {listing}. "
        f"Run 'rlkit plugins' to see which plugin registers what."
    )
