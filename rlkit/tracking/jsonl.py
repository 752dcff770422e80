"""`jsonl`: one flushed JSON object per row in ``metrics.jsonl`` — the source of truth."""

from __future__ import annotations

import json
import math

from rlkit.hookspecs import hookimpl
from rlkit.rundir import METRICS, truncate_jsonl
from rlkit.tracking.base import RunInfo, Tracker


def _clean(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class JsonlTracker(Tracker):
    def __init__(self, info: RunInfo) -> None:
        super().__init__(info)
        self.path = info.run_dir / METRICS
        if info.start_step > 0:
            truncate_jsonl(self.path, info.start_step)
        elif self.path.exists():
            self.path.unlink()
        self.handle = self.path.open("a", encoding="utf-8")

    def log(self, row: dict[str, float]) -> None:
        self.handle.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        self.handle.flush()

    def finish(self, summary: dict[str, float], failed: bool = False) -> None:
        self.handle.close()


@hookimpl
def rlkit_register_trackers(register):
    register("jsonl", JsonlTracker)
