"""The tracker contract."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RunInfo:
    """What a tracker may know about the run it records."""

    name: str
    run_dir: Path
    config: Any  # rlkit.config.RunConfig
    total_steps: int
    start_step: int = 0  # > 0 when resuming from a checkpoint


class Tracker:
    """Receives one metric row per step (and eval rows); ``finish`` is always called."""

    def __init__(self, info: RunInfo) -> None:
        self.info = info

    def log(self, row: dict[str, float]) -> None:
        """Record one row; ``row['train/step']`` is its x-axis."""

    def finish(self, summary: dict[str, float], failed: bool = False) -> None:
        """Flush and close."""
