"""Running a grid of runs: resumable, isolated, on local processes or Ray.

Each run executes in its own process (a crash, an out-of-memory or a bad plugin in one run
never takes the others down); finished runs are skipped, unfinished ones resume from their
last checkpoint, failed ones are recorded in their ``status.json`` and the grid goes on.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from rlkit.rundir import CONFIG, FAILED, STATUS, Status, read_status


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

    from rlkit.config import load_config
    from rlkit.core.run import Run
    from rlkit.plugins import make_plugin_manager, set_plugin_manager

    torch.set_num_threads(max(1, threads))
    name = config_data["name"]
    run_dir = Path(exp_dir) / name
    try:
        pm = make_plugin_manager(plugin_files)
        set_plugin_manager(pm)
        config = load_config(data=config_data, algorithms=pm.registry.algorithms)
        resume = (run_dir / "metrics.jsonl").exists()
        Run(config, out=exp_dir, resume=resume, pm=pm).train()
        return RunResult(name, "finished")
    except Exception as exc:  # noqa: BLE001 - isolate: record and let the grid continue
        error = f"{type(exc).__name__}: {exc}"
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / CONFIG).exists():
            # failed before the engine wrote it: keep the run's identity for the report
            (run_dir / CONFIG).write_text(yaml.safe_dump(config_data, sort_keys=False))
        status = Status(FAILED, error=error, traceback=traceback.format_exc())
        (run_dir / STATUS).write_text(json.dumps(asdict(status)))
        return RunResult(name, FAILED, error)


def run_grid(
    configs: list[dict[str, Any]], exp_dir: Path, *, executor: str = "local",
    workers: int | None = None, plugin_files: list[str] | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Run every config not yet finished; return one result per config."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    plugin_files = [str(Path(p).resolve()) for p in plugin_files or []]
    results, todo = [], []
    for data in configs:
        if run_state(exp_dir / data["name"]) == "finished":
            result = RunResult(data["name"], "skipped")
            results.append(result)
            if on_result:
                on_result(result)
        else:
            todo.append(data)
    if not todo:
        return results
    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, len(todo)))
    threads = max(1, cores // workers)
    if executor == "ray":
        new = _run_ray(todo, exp_dir, plugin_files, threads, on_result)
    elif workers == 1:
        new = []
        for data in todo:
            result = execute_run(data, str(exp_dir), plugin_files, threads)
            new.append(result)
            if on_result:
                on_result(result)
    else:
        new = []
        with _process_pool(workers) as pool:
            futures = [pool.submit(execute_run, d, str(exp_dir), plugin_files, threads)
                       for d in todo]
            for future in as_completed(futures):
                result = future.result()
                new.append(result)
                if on_result:
                    on_result(result)
    return results + new


def _process_pool(workers: int) -> ProcessPoolExecutor:
    """spawn: a fresh interpreter per worker (fork after torch has started threads
    deadlocks); one process per run (Python ≥ 3.11): isolation, and an honest per-run peak
    memory."""
    context = mp.get_context("spawn")
    if sys.version_info >= (3, 11):
        return ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1)
    return ProcessPoolExecutor(workers, mp_context=context)  # pragma: no cover


def _run_ray(todo: list[dict[str, Any]], exp_dir: Path, plugin_files: list[str], threads: int,
             on_result: Callable[[RunResult], None] | None) -> list[RunResult]:
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
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            pending.pop(ref)
            result = ray.get(ref)
            results.append(result)
            if on_result:
                on_result(result)
    return results
