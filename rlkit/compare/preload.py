"""Imported once by a grid's fork server (:func:`rlkit.compare.runner.start_fork_server`).

Every run of a local grid is a fork of that server, so each run starts with torch,
transformers, the engine, rlkit's own plugins and (when installed) wandb already imported
instead of importing them again: about 0.3 s a run on top of the engine's imports. Only
rlkit's own modules are imported here, never a third-party plugin's, and a module that fails
to import is left to the run, which imports it again and reports the error where it belongs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Iterator


def modules() -> Iterator[str]:
    """The modules the fork server imports, in order."""
    yield "rlkit.core.run"
    yield "rlkit.compare.runner"
    from rlkit.plugins import DEFAULT_PLUGINS

    yield from DEFAULT_PLUGINS
    for ep in importlib.metadata.entry_points(group="rlkit"):  # the built-in algorithms
        if ep.dist is not None and ep.dist.metadata["Name"] == "rlkit":
            yield ep.module
    if importlib.util.find_spec("wandb") is not None:
        yield "wandb"
        yield "wandb.sdk.launch.inputs.internal"  # what wandb.init imports on every start


def _preload() -> None:
    for name in modules():
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - the run imports it again and reports the error
            continue


_preload()
