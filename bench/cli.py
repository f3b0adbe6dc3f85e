"""CLI startup benchmark: whole commands as the editor types them, each run as a
subprocess in the repo root (a demo newsletter folder), median wall time of
several runs, next to baselines measured in the same run so the ratios hold on
a noisy machine.  Also the peak RSS of each command's process.

Targets on the project's 2-core machine: `newsletter --help` under 0.3 s and
`newsletter check ISSUE` under 0.5 s, in each of the states .newsletter-cache/
can be in: none yet (the folder's first check, or templates just edited), the
issue just edited (compiled templates cached, the inlined page not: premailer
runs; the editor's usual case), and the issue unchanged (nothing to inline).
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
    "check ISSUE, no cache": (CHECK, 0.5),
    "check ISSUE, issue edited": (CHECK, 0.5),
    "check ISSUE, unchanged": (CHECK, 0.5),
}
CACHE = ROOT / ".newsletter-cache"
# An installed package has its .pyc files (pip compiles them); a session with
# PYTHONDONTWRITEBYTECODE set would compile every newsletter module on every run.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
# What each command's runs delete first (untimed), to start in their cache state.
FORGET = {"check ISSUE, no cache": CACHE, "check ISSUE, issue edited": CACHE / "inline"}


def run_once(argv: list[str], forget: Path | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of one run of argv,
    after deleting `forget`. CPU time is what to compare when other work shares the
    machine: a wall time then includes waiting for a core.

    os.wait4 gives this child's own rusage; getrusage(RUSAGE_CHILDREN) would give
    the largest of every child so far, baselines included.
    """
    if forget:
        shutil.rmtree(forget, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {proc.returncode}:\n{stderr}")
    # Linux reports ru_maxrss in KB.
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, tuple[float, ...]]:
    """{name: (median s, fastest s, median CPU s, peak RSS MB)}. The commands take turns, run after
    run, so a busy moment on the machine slows all of them alike and the ratios hold."""
    for name, argv in commands.items():
        run_once(argv, FORGET.get(name))  # warm the OS file cache and the .pyc files
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(run_once(argv, FORGET.get(name)))
    return {
        name: (
            statistics.median(t for t, _, _ in runs_),
            min(t for t, _, _ in runs_),
            statistics.median(cpu for _, cpu, _ in runs_),
            max(rss for _, _, rss in runs_),
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
    print(
        f"wall median (fastest), CPU median, of {args.runs} runs each, in {ROOT}, "
        f"on {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}"
    )
    for name in BASELINES:
        print(f"  {name:<28} {_figures(results[name])}")
    missed = []
    for name, (_, target) in COMMANDS.items():
        median = results[name][0]
        verdict = "ok" if median < target else "MISSED"
        print(f"  {name:<28} {_figures(results[name])}  target < {target} s: {verdict}")
        cpu = results[name][2]
        ratios = ", ".join(
            f"{median / results[b][0]:.1f}x {b} (CPU {cpu / results[b][2]:.1f}x)"
            for b in baselines
            if b != name
        )
        print(f"  {'':<28} = {ratios}")
        if median >= target:
            missed.append(name)
    if missed:
        print(f"missed the target: {', '.join(missed)}")


def _figures(result: tuple[float, ...]) -> str:
    median, fastest, cpu, rss = result
    return f"{median:6.3f} s ({fastest:5.3f}), CPU {cpu:5.3f} s  {rss:4.0f} MB peak RSS"


if __name__ == "__main__":
    main()
