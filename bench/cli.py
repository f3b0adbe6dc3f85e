"""CLI startup benchmark: whole commands as the editor types them, each run as a
subprocess in the repo root (a demo newsletter folder), median wall time of
several runs, next to baselines measured in the same run so the ratios hold on
a noisy machine.  Also the peak RSS of each command's process.

Targets on the project's 2-core machine: `newsletter --help` under 0.3 s and
`newsletter check ISSUE` under 0.5 s.  Run: make bench   (or .venv/bin/python bench/cli.py)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
PYTHON = sys.executable
# The console script pip installed next to this python: what `newsletter` runs.
SCRIPT = Path(PYTHON).with_name("newsletter")

BASELINES = {
    "python -c pass": [PYTHON, "-c", "pass"],
    "python -c 'import typer'": [PYTHON, "-c", "import typer"],
}
COMMANDS = {  # name: (argv, target in seconds)
    "newsletter --help": ([str(SCRIPT), "--help"], 0.3),
    "newsletter check ISSUE": ([str(SCRIPT), "check", ISSUE], 0.5),
}


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run of argv.

    os.wait4 gives this child's own rusage; getrusage(RUSAGE_CHILDREN) would give
    the largest of every child so far, baselines included.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {proc.returncode}:\n{stderr}")
    # Linux reports ru_maxrss in KB.
    return elapsed, usage.ru_maxrss / 1024


def measure(argv: list[str], runs: int) -> tuple[float, float]:
    run_once(argv)  # warm the OS file cache and the .pyc files
    samples = [run_once(argv) for _ in range(runs)]
    return statistics.median(t for t, _ in samples), max(rss for _, rss in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command")
    args = parser.parse_args()
    if not SCRIPT.exists():
        sys.exit(f"{SCRIPT}: not found; install the project first (make .venv/.installed-stamp)")

    print(f"median of {args.runs} runs each, in {ROOT}, on {os.cpu_count()} CPU(s)")
    base = {}
    for name, argv in BASELINES.items():
        base[name], rss = measure(argv, args.runs)
        print(f"  {name:<26} {base[name]:6.3f} s  {rss:5.0f} MB peak RSS")
    missed = []
    for name, (argv, target) in COMMANDS.items():
        seconds, rss = measure(argv, args.runs)
        ratios = "  ".join(f"{seconds / b:5.1f}x {n}" for n, b in base.items())
        verdict = "ok" if seconds < target else "MISSED"
        print(
            f"  {name:<26} {seconds:6.3f} s  {rss:5.0f} MB peak RSS  "
            f"(target < {target} s: {verdict})"
        )
        print(f"  {'':<26} ratio: {ratios}")
        if seconds >= target:
            missed.append(name)
    if missed:
        print(f"missed the target: {', '.join(missed)}")


if __name__ == "__main__":
    main()
