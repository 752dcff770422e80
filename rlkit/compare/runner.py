"""Running a grid of runs: resumable, isolated, on local processes or Ray.

Each run executes in its own process (a crash, an out-of-memory or a bad plugin in one run
never takes the others down); finished runs are skipped, unfinished ones resume from their
last checkpoint, failed ones are recorded in their ``status.json`` and the grid goes on.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from rlkit.compare.progress import WORKER_ENV, GridDisplay
from rlkit.rundir import (
    CONFIG,
    FAILED,
    RUNNING,
    STATUS,
    DirLock,
    LockedError,
    Status,
    check_name,
    inside,
    locked,
    read_status,
)

#: ``forkserver`` (the default on Linux), ``spawn`` (elsewhere: a fresh interpreter per run)
#: or ``fork`` (fastest to start, for tests; only safe while the parent has started no
#: threads).
START_METHOD_ENV = "RLKIT_START_METHOD"


@dataclass
class RunResult:
    name: str
    state: str  # finished | failed | skipped
    error: str | None = None


def run_state(run_dir: Path) -> str | None:
    """The state in the run's ``status.json`` (:mod:`rlkit.rundir`'s schema), or None."""
    status = read_status(run_dir)
    return status.state if status is not None else None


def execute_run(config_data: dict[str, Any], exp_dir: str, plugin_files: list[str],
                threads: int) -> RunResult:
    """Run one config in this process (the body of every executor's task)."""
    import torch

    from rlkit.checkpoint import latest_checkpoint
    from rlkit.config import load_config
    from rlkit.core.run import THREADS_SHARE_ENV, Run
    from rlkit.plugins import make_plugin_manager, set_plugin_manager

    torch.set_num_threads(max(1, threads))
    os.environ[THREADS_SHARE_ENV] = str(max(1, threads))  # what train.threads: auto uses
    os.environ[WORKER_ENV] = "1"  # the parent shows progress; this process prints no bar
    name = config_data["name"]
    run_dir = inside(Path(exp_dir), Path(exp_dir) / check_name(name))
    try:
        pm = make_plugin_manager(plugin_files)
        set_plugin_manager(pm)
        config = load_config(data=config_data, algorithms=pm.registry.algorithms)
        # from its last checkpoint; a run killed before its first one starts over
        resume = latest_checkpoint(run_dir) is not None
        Run(config, out=exp_dir, resume=resume, restart=not resume, pm=pm).train()
        return RunResult(name, "finished")
    except LockedError as exc:  # another live process writes this run: leave its files alone
        return RunResult(name, FAILED, str(exc))
    except Exception as exc:  # noqa: BLE001 - isolate: record and let the grid continue
        error = f"{type(exc).__name__}: {exc}"
        record_failure(run_dir, config_data, error, traceback.format_exc())
        return RunResult(name, FAILED, error)


def record_failure(run_dir: Path, config_data: dict[str, Any], error: str,
                   trace: str | None = None) -> None:
    """Mark ``run_dir`` failed with ``error``; a run that failed before the engine wrote its
    config keeps ``config_data`` as its identity, so the report lists it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / CONFIG).exists():
        (run_dir / CONFIG).write_text(yaml.safe_dump(config_data, sort_keys=False))
    status = Status(FAILED, error=error, traceback=trace)
    (run_dir / STATUS).write_text(json.dumps(asdict(status)))


def run_grid(
    configs: list[dict[str, Any]], exp_dir: Path, *, executor: str = "local",
    workers: int | None = None, plugin_files: list[str] | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Run every config not yet finished; return one result per config.

    The experiment directory is locked for the whole grid: a second ``rlkit compare`` on the
    same directory stops with an error naming this process, so nothing is trained twice. A
    run still written by a live process (a leftover worker of a killed compare) is refused
    the same way; one whose status says "running" but whose process is gone is resumed.
    """
    exp_dir = Path(exp_dir)
    with locked(exp_dir, "experiment directory"):
        return _run_grid(configs, exp_dir, executor, workers, plugin_files, on_result)


def _check_not_held(run_dir: Path) -> None:
    """Raise :class:`LockedError` (naming the process) when a live process holds the run."""
    if (run_dir / ".lock").exists():
        probe = DirLock(run_dir, "run directory")
        probe.acquire()
        probe.release()


def _run_grid(configs: list[dict[str, Any]], exp_dir: Path, executor: str,
              workers: int | None, plugin_files: list[str] | None,
              on_result: Callable[[RunResult], None] | None) -> list[RunResult]:
    plugin_files = [str(Path(p).resolve()) for p in plugin_files or []]
    results, todo = [], []
    for data in configs:
        run_dir = inside(exp_dir, exp_dir / check_name(data["name"]))
        if run_state(run_dir) == "finished":
            result = RunResult(data["name"], "skipped")
            results.append(result)
            if on_result:
                on_result(result)
        else:
            _check_not_held(run_dir)
            todo.append(data)
    if not todo:
        return results
    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, len(todo)))
    threads = max(1, cores // workers)
    display: AbstractContextManager[Any] = (
        GridDisplay(exp_dir, [d["name"] for d in todo]) if GridDisplay.wanted()
        else nullcontext())

    def report(result: RunResult, shown: Any) -> None:
        new.append(result)
        if shown is not None:
            shown.finished(result.name)
        if on_result:
            on_result(result)

    new: list[RunResult] = []
    with display as shown:
        if executor == "ray":
            _run_ray(todo, exp_dir, plugin_files, threads, lambda r: report(r, shown), shown)
            return results + new
        # always a process per run, even one worker at a time: isolation, and each run's
        # peak memory is its own process's
        wandb_runs = _uses_wandb(todo)
        # not under a plain fork: the service's threads must not be forked mid-operation
        shared = wandb_runs and _start_method() != "fork"
        with _shared_wandb_service(shared), _process_pool(workers) as pool:
            futures = {pool.submit(execute_run, d, str(exp_dir), plugin_files, threads): d
                       for d in todo}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    data = futures[future]
                    try:
                        result = future.result()
                    except Exception as exc:  # noqa: BLE001 - the worker process died
                        result = _lost_worker(exp_dir, data, exc)
                    report(result, shown)
                if shown is not None:
                    shown.poll()
    return results + new


def _lost_worker(exp_dir: Path, data: dict[str, Any], exc: BaseException) -> RunResult:
    """A worker process that died without a result (killed, out of memory): the run is
    recorded as failed unless it finished or another live process holds it."""
    error = (f"the worker process running it died ({type(exc).__name__}: {exc}); it may have "
             f"been killed or run out of memory. Run the compare again to resume it.")
    run_dir = exp_dir / data["name"]
    status = read_status(run_dir)
    state = status.state if status is not None else None
    gone = status is not None and status.stale(after_s=float("inf"))  # its process is dead
    if state not in ("finished", RUNNING) or gone:
        record_failure(run_dir, data, error)
    return RunResult(data["name"], FAILED, error)


def _worker_init(parent: int, env: dict[str, str] | None = None, cwd: str | None = None) -> None:
    """In each worker: the parent's environment and working directory (a fork server was
    started with an older copy of both), no progress bar of its own, and exit when the parent
    dies (a killed ``rlkit compare`` leaves no worker training on behind it)."""
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    os.environ[WORKER_ENV] = "1"

    def watch() -> None:
        # the parent's pid, not getppid(): under forkserver the parent is the fork server
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGKILL)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="rlkit-parent-watch", daemon=True).start()


def _uses_wandb(configs: list[dict[str, Any]]) -> bool:
    """Whether any of these runs logs to wandb (its default tracker list includes it)."""
    from rlkit.config import TrackingConfig

    default = TrackingConfig().trackers
    for data in configs:
        tracking = data.get("tracking") or {}
        if "wandb" in (tracking.get("trackers") or default):
            return True
    return False


class _shared_wandb_service(AbstractContextManager[None]):
    """One wandb service process for the whole grid instead of one per run: ``wandb.setup()``
    here puts its address in ``WANDB_SERVICE``, which every worker inherits, and is torn down
    when the grid ends (a run's wandb start-up goes from ~0.5 s to ~0.25 s; measured in
    benchmarks/README.md). Nothing happens when no run uses wandb or wandb is missing, and a
    service that cannot start leaves each run to start its own, as before."""

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted and "WANDB_SERVICE" not in os.environ
        self.started = False

    def __enter__(self) -> None:
        if not self.wanted:
            return
        try:
            import wandb

            wandb.setup()
            self.started = "WANDB_SERVICE" in os.environ
        except Exception:  # noqa: BLE001 - each run then starts its own service
            self.started = False

    def __exit__(self, *exc: object) -> None:
        if self.started:
            import wandb

            try:
                wandb.teardown()
            finally:
                os.environ.pop("WANDB_SERVICE", None)


def _start_method() -> str:
    default = "forkserver" if sys.platform == "linux" else "spawn"
    return os.environ.get(START_METHOD_ENV) or default


#: what a grid's fork server imports before it forks the first run
FORK_SERVER_PRELOAD = ["rlkit.compare.preload"]


def start_fork_server() -> None:
    """Start the fork server of local grids now (when the start method is ``forkserver``).

    It imports the engine once (:mod:`rlkit.compare.preload`, ~4 s); the command line calls
    this first thing for ``compare`` and ``tune``, so that import runs beside the command's
    own loading of plugins and experiment instead of after it. Later pools reuse the server;
    environment variables set after this point reach the runs through the pool's initializer.
    """
    if _start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    mp.get_context("forkserver").set_forkserver_preload(FORK_SERVER_PRELOAD)
    forkserver.ensure_running()


def _process_pool(workers: int) -> ProcessPoolExecutor:
    """One process per run (Python ≥ 3.11): isolation, and an honest per-run peak memory.

    On Linux the default is a fork server that has imported torch, transformers, the engine,
    the built-in plugins and wandb once and started no threads (:mod:`rlkit.compare.preload`):
    each run's process is a cheap fork of it (a plain fork of this process could deadlock once
    torch has started threads; spawn pays the imports for every run).
    ``RLKIT_START_METHOD`` = spawn, forkserver or fork chooses explicitly."""
    method = _start_method()
    context = mp.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(FORK_SERVER_PRELOAD)
    extra: dict[str, Any] = {"initializer": _worker_init,
                             "initargs": (os.getpid(), dict(os.environ), os.getcwd())}
    if sys.version_info >= (3, 11) and method != "fork":  # fork refuses max_tasks_per_child
        extra["max_tasks_per_child"] = 1
    return ProcessPoolExecutor(workers, mp_context=context, **extra)


def _run_ray(todo: list[dict[str, Any]], exp_dir: Path, plugin_files: list[str], threads: int,
             on_result: Callable[[RunResult], None] | None,
             display: GridDisplay | None = None) -> list[RunResult]:
    try:
        import ray
    except ImportError:
        from rlkit.errors import RlkitError

        raise RlkitError("--executor ray needs Ray: pip install 'rlkit[ray]'.") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True,
                 log_to_driver=False)
    remote = ray.remote(num_cpus=threads)(execute_run)
    pending = {remote.remote(d, str(exp_dir), plugin_files, threads): d["name"] for d in todo}
    results = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        if display is not None:
            display.poll()
        for ref in done:
            pending.pop(ref)
            result = ray.get(ref)
            results.append(result)
            if on_result:
                on_result(result)
    return results
