"""`jsonl`: one flushed JSON object per row in ``metrics.jsonl`` — the source of truth."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from rlkit.hookspecs import hookimpl
from rlkit.tracking.base import RunInfo, Tracker


def truncate_after(path: Path, step: int) -> None:
    """Keep only rows with ``train/step <= step`` (resume: rows after the checkpoint are redone).
    A half-written last line from a killed run is dropped too."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("train/step", 0) <= step:
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def _clean(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class JsonlTracker(Tracker):
    def __init__(self, info: RunInfo) -> None:
        super().__init__(info)
        self.path = info.run_dir / "metrics.jsonl"
        if info.start_step > 0:
            truncate_after(self.path, info.start_step)
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
