"""What both sides of the benchmark share: the environment, step-time summaries, result rows
and their tables. Standard library only (runs in either virtual environment)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
MAIN_PYTHON = REPO / ".venv" / "bin" / "python"
TRL_PYTHON = REPO / ".venv-bench" / "bin" / "python"


def quiet_environment() -> None:
    """No hub, no wandb, no tokenizer thread pools, no progress bars."""
    for key, value in {
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "disabled", "WANDB_SILENT": "true", "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "DISABLE_MLFLOW_INTEGRATION": "TRUE", "TRL_EXPERIMENTAL_SILENCE": "1",
    }.items():
        os.environ.setdefault(key, value)
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def peak_rss_mb() -> float:
    """The process's peak resident memory (Linux reports KiB): the same measure rlkit's
    perf/peak_memory_mb takes on CPU."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def summarize(step_wall_s: Sequence[float], episodes_per_step: Sequence[float],
              tokens_per_step: Sequence[float],
              step_cpu_s: Sequence[float] | None = None) -> dict[str, Any]:
    """Episodes (sequences trained on) and response tokens per second over the timed steps,
    per wall second and, less sensitive to other jobs on a shared machine, per CPU second of
    this process (``time.process_time``; with one torch thread the two agree on an idle
    machine)."""
    total = sum(step_wall_s)
    out: dict[str, Any] = {
        "timed_s": total,
        "episodes_per_s": sum(episodes_per_step) / total if total > 0 else float("nan"),
        "tokens_per_s": sum(tokens_per_step) / total if total > 0 else float("nan"),
        "step_s_median": statistics.median(step_wall_s) if step_wall_s else float("nan"),
    }
    if step_cpu_s:
        cpu = sum(step_cpu_s)
        out["step_cpu_s"] = list(step_cpu_s)
        out["timed_cpu_s"] = cpu
        out["episodes_per_cpu_s"] = sum(episodes_per_step) / cpu if cpu > 0 else float("nan")
        out["cpu_per_wall"] = cpu / total if total > 0 else float("nan")
    return out


def write_result(result: dict[str, Any], path: str | None) -> None:
    text = json.dumps(result, indent=1, sort_keys=True)
    if path:
        Path(path).write_text(text + "\n")


def print_result(result: dict[str, Any], out=sys.stdout) -> None:
    r = result
    phases = ""
    if r.get("rollout_share") is not None:
        phases = (f"  rollout {100 * r['rollout_share']:.0f}% / update "
                  f"{100 * r['update_share']:.0f}%")
        if r.get("other_share"):
            phases += f" / other {100 * r['other_share']:.0f}%"
    elif r.get("generate_share") is not None:
        phases = f"  generate {100 * r['generate_share']:.0f}% of the step"
    print(
        f"{r['framework']:>5} {r['workload']} {r['algo']:<12} "
        f"{r['episodes_per_s']:8.1f} episodes/s {r['tokens_per_s']:9.0f} tokens/s "
        f"({r.get('episodes_per_cpu_s', float('nan')):7.1f} per CPU-s) "
        f"peak {r['peak_memory_mb']:6.0f} MB  step {1000 * r['step_s_median']:6.0f} ms{phases}",
        file=out,
    )


def median(values: Sequence[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def export_rlkit(rev: str, work_dir: Path) -> tuple[Path, str]:
    """``rlkit/`` and ``plugins/`` (as ``rlkit_plugins/``) of commit ``rev``, exported with
    ``git archive`` under ``work_dir``, for benchmarking a commit while the work tree is being
    edited. Put the returned directory first on PYTHONPATH: it then shadows the editable
    install (whose finder comes after the path finder)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    dest = Path(work_dir) / f"rlkit-src-{sha[:12]}"
    if not (dest / "rlkit" / "__init__.py").is_file():
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".rlkit-src-", dir=work_dir))
        try:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", sha, "rlkit", "plugins"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
            (tmp / "plugins").rename(tmp / "rlkit_plugins")
            try:
                tmp.rename(dest)
            except OSError:  # exported concurrently
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest, sha


def env_with_source(source: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(source), *filter(None, [env.get("PYTHONPATH")])])
        env["RLKIT_BENCH_SOURCE"] = str(source)
    return env


def rlkit_source() -> str:
    """Where the imported rlkit comes from: an exported commit or the work tree."""
    import rlkit

    path = Path(rlkit.__file__).resolve().parent.parent
    return "work tree" if path == REPO else str(path)
