"""The quickstart grid, timed by phase; optionally against another commit, interleaved.

    .venv/bin/python benchmarks/quickstart.py                        # the work tree, once
    .venv/bin/python benchmarks/quickstart.py --against e0168fa --repeat 2

Runs ``rlkit compare experiments/quickstart.yaml`` exactly as the README does (the console
script, 2 workers on this machine's cores) in a fresh output directory, with the world cache of
``$RLKIT_CACHE_DIR`` (build it first: ``rlkit prepare reviews``), and reads the phases from the
files the grid writes:

* **start → first run**: from launching the command to the first run's ``config.yaml`` (the
  engine writes it when its training loop starts): imports, plugins, the experiment, the task,
  the fork server;
* **runs**: from the first run's start to the last run's ``status.json``; **sum of runs** is
  the sum of the runs' own ``wall_s`` (training loops with their evaluations and checkpoints);
  30 runs on 2 workers cannot take less than half of it;
* **report**: from the last run's end to ``report.html``; **exit**: from there to the end.

With ``--against REV`` that commit (``git archive``, the work tree untouched) runs too,
alternating which goes first; every report table is then compared between the two, and the
rows that differ are printed (the cost table's wall-time and peak-memory columns are
measurements and always differ).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, env_with_source, export_rlkit, load_average  # noqa: E402


def run_once(label: str, source: Path | None, out: Path) -> dict[str, float | str]:
    shutil.rmtree(out, ignore_errors=True)
    env = env_with_source(source)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("WANDB_MODE", "offline")
    rlkit = Path(sys.executable).with_name("rlkit")
    start = time.time()
    proc = subprocess.run([str(rlkit), "compare", str(REPO / "experiments" / "quickstart.yaml"),
                           "--out", str(out)], env=env, capture_output=True, text=True)
    end = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"{label}: rlkit compare failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    exp = out / "quickstart"
    runs = sorted(p for p in exp.iterdir() if (p / "status.json").is_file())
    starts = [(p / "config.yaml").stat().st_mtime for p in runs]
    ends = [(p / "status.json").stat().st_mtime for p in runs]
    train = sum(json.loads((p / "status.json").read_text())["wall_s"] for p in runs)
    report = (exp / "report.html").stat().st_mtime
    return {"label": label, "runs": len(runs), "total_s": end - start,
            "start_to_first_run_s": min(starts) - start, "runs_s": max(ends) - min(starts),
            "sum_of_runs_s": train, "report_s": report - max(ends), "exit_s": end - report,
            "load_average": load_average(), "report_md": str(exp / "report.md")}


def table_rows(report_md: str) -> list[str]:
    """Every table row of the report (the cost table's rows included: their wall-time,
    peak-memory and throughput columns are measurements and differ from run to run)."""
    rows = []
    text = Path(report_md).read_text()
    for line in text.splitlines():
        if not line.startswith("| ") or set(line) <= set("|-: "):
            continue
        rows.append(line)
    return rows


def differing_rows(a: str, b: str) -> list[tuple[str, str]]:
    ra, rb = table_rows(a), table_rows(b)
    return [(x, y) for x, y in zip(ra, rb, strict=False) if x != y] + (
        [("(row count)", f"{len(ra)} vs {len(rb)}")] if len(ra) != len(rb) else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default=None, metavar="REV",
                        help="also run this commit, interleaved, and compare the reports")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--work-dir", type=Path,
                        default=Path(os.environ.get("RLKIT_BENCH_DIR", "/tmp/rlkit-bench")))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    sides: list[tuple[str, Path | None]] = [("work tree", None)]
    if args.against:
        source, sha = export_rlkit(args.against, args.work_dir)
        sides.append((sha[:7], source))
    results: list[dict[str, float | str]] = []
    for i in range(args.repeat):
        for label, source in (sides if i % 2 == 0 else sides[::-1]):
            out = args.work_dir / f"quickstart-{re.sub(r'[^a-z0-9]', '', label)}"
            r = run_once(label, source, out)
            r["repeat"] = i + 1
            results.append(r)
            print(f"[{i + 1}/{args.repeat}] {label:9s} total {r['total_s']:5.1f} s | start -> "
                  f"first run {r['start_to_first_run_s']:4.1f} | runs {r['runs_s']:5.1f} (sum of "
                  f"runs {r['sum_of_runs_s']:5.1f}) | report {r['report_s']:4.1f} | exit "
                  f"{r['exit_s']:4.1f} | load {r['load_average']}", flush=True)
            shutil.copy(str(r["report_md"]), args.work_dir / f"report-{label.replace(' ', '')}-{i + 1}.md")
            r["report_md"] = str(args.work_dir / f"report-{label.replace(' ', '')}-{i + 1}.md")
    for label, _ in sides:
        totals = [float(r["total_s"]) for r in results if r["label"] == label]
        print(f"{label}: median total {statistics.median(totals):.1f} s over {len(totals)}")
    if args.against:
        ours = next(r for r in results if r["label"] == "work tree")
        theirs = next(r for r in results if r["label"] != "work tree")
        diff = differing_rows(str(ours["report_md"]), str(theirs["report_md"]))
        print(f"report tables: {len(table_rows(str(ours['report_md'])))} rows, {len(diff)} differ")
        for x, y in diff:
            print(f"  work tree: {x}\n  {theirs['label']:9s}: {y}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
