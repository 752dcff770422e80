"""rlkit's vLLM generation backend (``rollout.backend: vllm``), an optional extra:
``pip install rlkit[vllm]``.

This package is an ordinary rlkit plugin (entry point ``vllm`` in the ``rlkit`` group). It
registers the backend only when vLLM is installed, and imports vLLM only when a run builds the
backend, so the core never imports vLLM and ``rlkit plugins`` stays fast without it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from rlkit.hookspecs import hookimpl


def vllm_available() -> bool:
    """vLLM is installed (found without importing it: importing vLLM takes seconds)."""
    return importlib.util.find_spec("vllm") is not None


@hookimpl
def rlkit_register_backends(register: Callable[[Any], None]) -> None:
    if vllm_available():
        from rlkit_vllm.backend import VLLMBackend

        register(VLLMBackend)
