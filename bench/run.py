"""Run every benchmark of `make bench` in turn, timing each, then gather them (bench/results.py).

    python bench/run.py            # what `make bench` runs
    python bench/run.py --only length_grouping hardware   # rerun some; the others keep their last time

Each script's wall time goes to bench/timings.json with the date and commit it ran at and the
machine's fp32 matmul rate measured before it (bench/hardware.py's first figure), so
results.md can say how long `make bench` takes on this machine (the issue's target: 30 minutes
on 2 cores) from a measurement rather than a guess. With --only, the total mixes times taken on
different occasions; results.md and the README name each one, and give no verdict while a
benchmark has no time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hardware import matmul_rate

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def steps(py: str) -> dict[str, list[str]]:
    """The benchmarks in the order `make bench` runs them: a name and its command."""
    gpu = ["bash", "bench/gpu_check.sh"] if shutil.which("nvidia-smi") else \
        ["bash", "bench/gpu_check.sh", "--tiny", "--out", "bench/gpu_check_tiny_cpu.md"]
    return {
        "overhead": [py, "bench/overhead.py", "--out", "bench/overhead.md"],
        "ppo_vs_trl112": ["bash", "bench/ppo_vs_trl112.sh"],
        "hardware": [py, "bench/hardware.py", "--out", "bench/hardware.json"],
        "length_grouping": [py, "bench/length_grouping.py", "--out", "bench/length_grouping.json"],
        "ppo_memory": [py, "bench/ppo_memory.py", "--out", "bench/ppo_memory.json"],
        "gpu_check": gpu,
    }


def summary(timings: dict) -> dict:
    """bench/timings.json summed: the minutes, the runs they come from, and the verdict against 30 minutes
    on 2 cores, given only when every benchmark has a time and all ran on 2 cores."""
    missing = [name for name in steps("python") if name not in timings]
    seconds = sum(t["seconds"] for t in timings.values())
    cores = sorted({t["cores"] for t in timings.values()})

    def occasion(t: dict) -> str:  # the matmul rate is kept since 2026-12-01's second run
        rate = f"fp32 matmul {t['matmul_gflops']} GFLOP/s" if "matmul_gflops" in t else "matmul rate not kept"
        return f"{t['date']} at {t['commit']}, {rate}"

    met = None if missing or cores != [2] else seconds <= 30 * 60
    over = f"{seconds - 1800:.0f} s" if seconds - 1800 < 60 else f"{(seconds - 1800) / 60:.1f} minutes"
    return {"minutes": seconds / 60, "missing": missing, "cores": "/".join(map(str, cores)), "met": met,
            "verdict": "no verdict" if met is None else "met" if met else f"missed by {over}",
            "occasions": "; ".join(sorted({occasion(t) for t in timings.values()})),
            "parts": ", ".join(f"{name} {t['seconds'] / 60:.1f}" for name, t in timings.items())}


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    args = ap.parse_args()
    py = os.environ.get("PY", sys.executable)
    todo = steps(py)
    unknown = sorted(set(args.only or []) - set(todo))
    if unknown:
        sys.exit(f"bench/run.py: unknown benchmark {', '.join(unknown)}; choose from {', '.join(todo)}")
    path = BENCH / "timings.json"
    timings = json.loads(path.read_text()) if path.is_file() else {}  # a failed step keeps the last full record
    commit = _commit()  # the code measured: taken before anything runs
    # this machine's speed today: the same 2-core machine has measured 116 to 300 GFLOP/s on different days
    gflops = round(matmul_rate() / 1e9)
    for name, command in todo.items():
        if args.only and name not in args.only:
            continue
        print(f"== bench {name}: {' '.join(command)}", flush=True)
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PY": py})
        timings[name] = {"seconds": round(time.perf_counter() - start, 1), "cores": os.cpu_count(),
                         "date": datetime.date.today().isoformat(), "commit": commit,
                         "matmul_gflops": gflops}
        path.write_text(json.dumps(timings, indent=2) + "\n")  # kept after each step: a failure keeps the others
    subprocess.run([py, "bench/results.py"], cwd=ROOT, check=True)
    subprocess.run([py, "bench/readme_figures.py"], cwd=ROOT, check=True)  # the README's bench lines


if __name__ == "__main__":
    main()
