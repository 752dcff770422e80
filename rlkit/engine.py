"""Compatibility name: the run now lives in :mod:`rlkit.core.run` (see docs/architecture.md)."""

from rlkit.core.experience import stream_seed
from rlkit.core.run import Run, peak_memory_mb

__all__ = ["Run", "peak_memory_mb", "stream_seed"]
