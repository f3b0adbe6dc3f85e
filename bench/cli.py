"""CLI startup benchmark: whole commands as the editor types them, each run as a
subprocess in the repo root (a demo newsletter folder), median wall time of
several runs, next to baselines measured in the same run so the ratios hold on
a noisy machine.  Also the peak RSS of each command's process.

Targets on the project's 2-core machine: `newsletter --help` under 0.3 s and
`newsletter check ISSUE` under 0.5 s, both the first check of an issue (`cold`: no
inlined page in .newsletter-cache/, so premailer runs) and a check again after an
edit elsewhere (`warm`: the page comes from the cache).
Run: make bench   (or .venv/bin/python bench/cli.py)
"""

from __future__ import annotations

import argparse
import os
import shutil
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
CHECK = [str(SCRIPT), "check", ISSUE]
COMMANDS = {  # name: (argv, target in seconds)
    "newsletter --help": ([str(SCRIPT), "--help"], 0.3),
    "newsletter check ISSUE cold": (CHECK, 0.5),
    "newsletter check ISSUE warm": (CHECK, 0.5),
}
# The commands whose runs start with no cache: the run's first check of an issue.
COLD = {"newsletter check ISSUE cold"}
CACHE = ROOT / ".newsletter-cache"


def run_once(argv: list[str], cold: bool = False) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run of argv; `cold` empties the
    newsletter's cache first (not timed).

    os.wait4 gives this child's own rusage; getrusage(RUSAGE_CHILDREN) would give
    the largest of every child so far, baselines included.
    """
    if cold:
        shutil.rmtree(CACHE, ignore_errors=True)
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


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, tuple[float, float, float]]:
    """{name: (median s, fastest s, peak RSS MB)}. The commands take turns, run after
    run, so a busy moment on the machine slows all of them alike and the ratios hold."""
    for name, argv in commands.items():
        run_once(argv, name in COLD)  # warm the OS file cache and the .pyc files
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(run_once(argv, name in COLD))
    return {
        name: (
            statistics.median(t for t, _ in runs_),
            min(t for t, _ in runs_),
            max(rss for _, rss in runs_),
        )
        for name, runs_ in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command")
    args = parser.parse_args()
    if not SCRIPT.exists():
        sys.exit(f"{SCRIPT}: not found; install the project first (make .venv/.installed-stamp)")

    results = measure(BASELINES | {name: argv for name, (argv, _) in COMMANDS.items()}, args.runs)
    baselines = [*BASELINES, "newsletter --help"]
    print(f"median (fastest) of {args.runs} runs each, in {ROOT}, on {os.cpu_count()} CPU(s)")
    for name in BASELINES:
        median, fastest, rss = results[name]
        print(f"  {name:<28} {median:6.3f} s ({fastest:5.3f})  {rss:4.0f} MB peak RSS")
    missed = []
    for name, (_, target) in COMMANDS.items():
        median, fastest, rss = results[name]
        verdict = "ok" if median < target else "MISSED"
        print(
            f"  {name:<28} {median:6.3f} s ({fastest:5.3f})  {rss:4.0f} MB peak RSS  "
            f"target < {target} s: {verdict}"
        )
        ratios = ", ".join(f"{median / results[b][0]:.1f}x {b}" for b in baselines if b != name)
        print(f"  {'':<28} = {ratios}")
        if median >= target:
            missed.append(name)
    if missed:
        print(f"missed the target: {', '.join(missed)}")


if __name__ == "__main__":
    main()
