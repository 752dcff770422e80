"""The run directory: every path in it, and every file the engine writes there.

::

    <out>/<name>/config.yaml       the resolved config (written before the models are built)
    <out>/<name>/status.json       one schema: state, error, step, total, wall_s, pid, heartbeat
    <out>/<name>/.lock, .lock.owner  held by the one process writing the run (see DirLock)
    <out>/<name>/metrics.jsonl     one JSON object per step (the jsonl tracker writes it)
    <out>/<name>/samples.jsonl     a few evaluation samples per evaluation
    <out>/<name>/checkpoints/      step_XXXXXX/ (see rlkit.checkpoint)
    <out>/<name>/policy/           the final policy (Hugging Face format)

Readers (the grid runner, the report) use :func:`read_status` and the path helpers here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rlkit.errors import ConfigError

CONFIG = "config.yaml"
STATUS = "status.json"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
CHECKPOINTS = "checkpoints"
POLICY = "policy"

RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


def check_name(name: str, what: str = "run name") -> str:
    """Run and experiment names become directory names: letters, digits and ``._=+-``, not
    starting with a dot, so a name can never point outside the output directory."""
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 200:
        raise ConfigError(
            f"The {what} {name!r} is not allowed: use letters, digits and . _ = + - (not "
            f"starting with a dot or dash, no '/', at most 200 characters); it names a "
            f"directory inside the output directory.")
    return name


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved, refused unless it lies inside ``root`` (also resolved)."""
    resolved, base = path.resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        raise ConfigError(f"Refusing to write '{resolved}': it is outside the output directory "
                          f"'{base}'.")
    return resolved


@dataclass
class Status:
    """The one ``status.json`` schema (engine and grid runner alike)."""

    state: str
    error: str | None = None
    step: int = 0
    wall_s: float = 0.0
    pid: int | None = None
    host: str | None = None
    heartbeat: float | None = None  # time.time() of the last write while running
    traceback: str | None = None
    total: int | None = None  # the run's total steps (progress displays)

    def stale(self, after_s: float = 120.0) -> bool:
        """A "running" status whose process is gone (same host) or silent for ``after_s``."""
        if self.state != RUNNING:
            return False
        if self.host == socket.gethostname() and self.pid is not None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        return self.heartbeat is not None and time.time() - self.heartbeat > after_s


def read_status(run_dir: Path) -> Status | None:
    try:
        data = json.loads((run_dir / STATUS).read_text())
        return Status(**{k: v for k, v in data.items() if k in Status.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None


class RunDir:
    """Paths and writers of one run directory."""

    def __init__(self, out: str | Path, name: str) -> None:
        self.out = Path(out)
        self.path = inside(self.out, self.out / check_name(name))

    def __truediv__(self, part: str) -> Path:
        return self.path / part

    def create(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"Cannot write the run directory '{self.path}': {exc.strerror}. "
                              f"Choose another --out (or out:) that you can write to.") from None

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def has_run(self) -> bool:
        return (self.path / METRICS).exists() or self.checkpoints.exists()

    def write_config(self, text: str) -> None:
        _atomic_write(self.path / CONFIG, text)

    def read_config(self) -> str | None:
        try:
            return (self.path / CONFIG).read_text(encoding="utf-8")
        except OSError:
            return None

    def write_status(self, state: str, *, step: int = 0, wall_s: float = 0.0,
                     error: str | None = None, traceback: str | None = None,
                     total: int | None = None) -> None:
        status = Status(state, error, step, wall_s, os.getpid(), socket.gethostname(),
                        time.time(), traceback, total)
        _atomic_write(self.path / STATUS, json.dumps(asdict(status)))

    def lock(self) -> DirLock:
        """The run directory's lock: one writing process at a time."""
        return DirLock(self.path, "run directory")

    def clear(self) -> None:
        """Start over (``rlkit run --restart``): remove the logs, checkpoints, final policy
        and status of a previous attempt."""
        for name in (METRICS, SAMPLES, STATUS):
            (self.path / name).unlink(missing_ok=True)
        for name in (CHECKPOINTS, POLICY):
            shutil.rmtree(self.path / name, ignore_errors=True)

    def append_samples(self, rows: list[dict[str, Any]]) -> None:
        with (self.path / SAMPLES).open("a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")

    def cut_back(self, step: int) -> None:
        """Resume: every file the run appends to keeps only rows of steps ≤ ``step`` (the
        checkpoint's), so the redone steps are written once. A torn last line is dropped."""
        for name in (METRICS, SAMPLES):
            truncate_jsonl(self.path / name, step)

    def fresh(self) -> None:
        """A new run: remove what a previous attempt at step 0 appended."""
        for name in (METRICS, SAMPLES):
            (self.path / name).unlink(missing_ok=True)


class DirLock:
    """An exclusive lock on a directory (``filelock``, an OS lock released when the holder
    dies, even by SIGKILL), with the holder's pid and host in ``.lock.owner`` so that a second
    process is told who holds it. ``with DirLock(path, "run directory"):``."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = Path(path), what
        self._lock: Any = None

    @property
    def owner_file(self) -> Path:
        return self.path / ".lock.owner"

    def holder(self) -> dict[str, Any]:
        try:
            data = json.loads(self.owner_file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.path / ".lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            held = self.holder()
            who = (f"process {held.get('pid')} on {held.get('host')} ({held.get('command')})"
                   if held.get("pid") else "another process")
            raise LockedError(
                f"The {self.what} '{self.path}' is in use by {who}: two writers would train "
                f"the same runs twice. Wait for it to finish, or stop that process (kill "
                f"{held.get('pid', 'PID')}) and run again; finished work is kept.") from None
        except OSError as exc:
            raise ConfigError(f"Cannot lock the {self.what} '{self.path}': {exc.strerror}. "
                              f"Choose an output directory you can write to.") from None
        self._lock = lock
        _atomic_write(self.owner_file, json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
             "command": " ".join(os.path.basename(a) if i == 0 else a
                                 for i, a in enumerate(sys.argv[:3]))}))

    def release(self) -> None:
        if self._lock is not None:
            self.owner_file.unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    def __enter__(self) -> DirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LockedError(ConfigError):
    """A directory is locked by another live process (its pid is in the message)."""


@contextmanager
def locked(path: Path, what: str) -> Iterator[DirLock]:
    """``with locked(exp_dir, "experiment directory"):`` (creates the directory)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"Cannot create the {what} '{path}': {exc.strerror}. Choose an "
                          f"output directory (--out) that you can write to.") from None
    with DirLock(path, what) as lock:
        yield lock


def truncate_jsonl(path: Path, step: int) -> None:
    """Keep only rows with ``train/step <= step``; a half-written line is dropped too."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and row.get("train/step", 0) <= step:
            kept.append(line)
    _atomic_write(path, "".join(line + "\n" for line in kept))


@contextmanager
def replacing_directory(final: Path) -> Iterator[Path]:
    """A directory that replaces ``final`` whole or not at all: the block writes into a
    temporary directory beside it (``.<name>.tmp-*``; those a killed writer left behind are
    removed first), renamed onto ``final`` when the block ends and removed if it raises. A
    kill at any moment leaves either the old ``final`` or the new one, never half of one."""
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
