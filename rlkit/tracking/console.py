"""`console`: a progress bar with step, reward, KL and samples/s (plain lines when not a TTY)."""

from __future__ import annotations

import os
import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rlkit.hookspecs import hookimpl
from rlkit.tracking.base import RunInfo, Tracker


def _fmt(row: dict[str, float], key: str, spec: str = ".3f") -> str:
    value = row.get(key)
    return "-" if value is None else format(value, spec)


class ConsoleTracker(Tracker):
    def __init__(self, info: RunInfo) -> None:
        super().__init__(info)
        # In a grid worker the parent process shows one display for every run (fed by the
        # runs' status files); a worker printing its own bar would overwrite the others'.
        self.quiet = os.environ.get("RLKIT_GRID_WORKER") == "1"
        self.interactive = sys.stderr.isatty() and not self.quiet
        self.every = max(1, info.total_steps // 10)
        self.progress = None
        if self.interactive:
            self.progress = Progress(
                TextColumn(f"[bold]{info.name}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeElapsedColumn(), transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "train", total=info.total_steps, completed=info.start_step, status=""
            )

    def _status(self, row: dict[str, float]) -> str:
        status = (
            f"reward {_fmt(row, 'objective/reward')}  kl {_fmt(row, 'objective/kl')}  "
            f"{_fmt(row, 'perf/samples_per_s', '.1f')} samples/s"
        )
        if "eval/reward" in row:
            status += f"  eval {_fmt(row, 'eval/reward')}"
        return status

    def log(self, row: dict[str, float]) -> None:
        step = int(row.get("train/step", 0))
        if self.progress is not None:
            self.progress.update(self.task, completed=step, status=self._status(row))
        elif self.quiet:
            return
        elif step % self.every == 0 or step == self.info.total_steps or "eval/reward" in row:
            print(f"[{self.info.name}] step {step}/{self.info.total_steps}  {self._status(row)}",
                  file=sys.stderr, flush=True)

    def finish(self, summary: dict[str, float], failed: bool = False) -> None:
        if self.progress is not None:
            self.progress.stop()


@hookimpl
def rlkit_register_trackers(register):
    register("console", ConsoleTracker)
