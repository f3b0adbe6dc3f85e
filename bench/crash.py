"""Crash-window benchmark: kill -9 a `newsletter send` at random points of a
6,000-recipient send at unlimited rate, resume it, and count the readers who got
the issue twice. The bound is one per SMTP connection a kill (the messages the
server took whose result was not yet committed).

    .venv/bin/python bench/crash.py              # 5 kills, 4 connections
    .venv/bin/python bench/crash.py --kills 10 --connections 8
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from send import prepare_folder

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"


class Counting:
    """An SMTP sink that counts the copies each recipient received."""

    def __init__(self) -> None:
        self.copies: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.copies.update(envelope.rcpt_tos)
        return "250 OK"

    def total(self) -> int:
        with self.lock:
            return sum(self.copies.values())


def newsletter(folder: Path, *args: str, out=subprocess.DEVNULL) -> subprocess.Popen:
    """`newsletter ARGS` in the folder, without the caller's NEWSLETTER_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.PIPE,
        text=True,
    )


def one_kill(recipients: int, connections: int, rng: random.Random) -> tuple[int, int]:
    """(received when killed, readers who got two copies after the resume)."""
    counting = Counting()
    with tempfile.TemporaryDirectory(prefix="newsletter-crash-") as tmp:
        folder, port, _ = prepare_folder(tmp, connections, recipients)
        controller = Controller(counting, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            point = rng.randint(recipients // 10, recipients * 9 // 10)
            process = newsletter(folder, "send", ISSUE, "--yes")
            deadline = time.monotonic() + 120
            while counting.total() < point:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the send ended early: {process.stderr.read()}")
                time.sleep(0.001)
            process.send_signal(signal.SIGKILL)
            process.wait()
            at_kill = counting.total()
            resumed = newsletter(folder, "send", ISSUE, "--yes")
            _, err = resumed.communicate(timeout=300)
            if resumed.returncode != 0:
                raise SystemExit(f"the resume failed: {err}")
        finally:
            controller.stop()
    if len(counting.copies) != recipients:
        raise SystemExit(f"{recipients - len(counting.copies)} reader(s) were skipped")
    return at_kill, sum(1 for n in counting.copies.values() if n > 1)


def main() -> None:
    parser = argparse.ArgumentParser(description="kill -9 and resume")
    parser.add_argument("-n", "--recipients", type=int, default=6000)
    parser.add_argument("-k", "--kills", type=int, default=5)
    parser.add_argument("-c", "--connections", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    worst = total = 0
    for number in range(1, args.kills + 1):
        at_kill, twice = one_kill(args.recipients, args.connections, rng)
        worst, total = max(worst, twice), total + twice
        print(f"kill {number}: at {at_kill:,} received; {twice} reader(s) got two copies")
    print(
        f"duplicates: {total} over {args.kills} kills of a {args.recipients:,}-recipient send "
        f"at unlimited rate; worst {worst} a kill (bound: {args.connections}, the connections)"
    )
    if worst > args.connections:
        raise SystemExit("more duplicates than connections: the crash window is too wide")


if __name__ == "__main__":
    main()
