"""One live progress display for a grid, in the parent process.

Workers print no progress of their own (a grid worker's console tracker is silent: two
workers' bars would overwrite each other on one line). Each run already writes its step and
total steps to its ``status.json`` after every step (the heartbeat, :mod:`rlkit.rundir`), so
the parent reads those files — which works alike for local processes and for Ray workers on a
shared file system — and draws one bar per run that is under way, plus one for the grid.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rlkit.rundir import FINISHED, RUNNING, read_status

#: Set in grid workers: the console tracker stays silent there (the parent shows progress).
WORKER_ENV = "RLKIT_GRID_WORKER"


class GridDisplay:
    """A rich progress display fed by the runs' status files; ``poll()`` refreshes it."""

    def __init__(self, exp_dir: Path, names: list[str], console: Any = None,
                 interval_s: float = 0.5) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.exp_dir, self.names, self.interval_s = exp_dir, list(names), interval_s
        self.console = console or Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                                 console=self.console, transient=True)
        self.grid = self.progress.add_task("grid", total=len(self.names), note="runs")
        self.tasks: dict[str, Any] = {}
        self.done: set[str] = set()
        self._last = 0.0

    @classmethod
    def wanted(cls) -> bool:
        """Only on an interactive terminal (a log file gets the one line per finished run)."""
        return sys.stderr.isatty()

    def __enter__(self) -> GridDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.poll(force=True)
        self.progress.stop()

    def finished(self, name: str) -> None:
        """A run's result came back (finished, failed or skipped)."""
        self.done.add(name)
        task = self.tasks.pop(name, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.update(self.grid, completed=len(self.done))

    def poll(self, force: bool = False) -> None:
        """Read the status files of the runs not yet done (at most every ``interval_s``)."""
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        for name in self.names:
            if name in self.done:
                continue
            status = read_status(self.exp_dir / name)
            if status is None or status.state not in (RUNNING, FINISHED) or status.stale():
                continue
            total = status.total or max(status.step, 1)
            if name not in self.tasks:
                self.tasks[name] = self.progress.add_task(name, total=total, note="")
            self.progress.update(self.tasks[name], total=total, completed=status.step,
                                 note=f"{status.wall_s:.0f} s")
        self.progress.refresh()
