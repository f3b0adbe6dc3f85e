"""Send benchmark: N subscribers through real SMTP into a sink on loopback,
with the delivery log written as in production, against Postfix's own
`smtp-source` pushing the same number of same-sized messages into the same
sink in the same run (the ratio is the figure that holds on a noisy machine).

Targets on the project's 2-core machine: throughput at least 0.85x smtp-source;
per-recipient build under 100 µs; peak RSS under 100 MB and flat from 10,000
to 1,000,000 subscribers.

    make bench                           # 10,000 subscribers
    .venv/bin/python bench/send.py -n 100000
    .venv/bin/python bench/send.py -n 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from newsletter.compose import scaffold
from newsletter.config import load_config
from newsletter.mail.message import MessageFactory, Recipient
from newsletter.service import sending
from newsletter.service.runner import Runner
from newsletter.storage import db
from newsletter.storage.delivery_log import DeliveryLog
from newsletter.tokens import Signer, secret_of

ROOT = Path(__file__).resolve().parent.parent
ISSUE = ROOT / "issues" / "2026-11-24-survival-of-the-fittest-funnel.md"
SMTP_SOURCE_CAP = 100_000  # smtp-source's share is bounded so a 1M run stays reasonable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the sink did not start on port {port}")


def start_sink(port: int, folder: Path) -> tuple[subprocess.Popen, str]:
    smtp_sink = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
    )
    if smtp_sink:
        command = [smtp_sink, "-u", "nobody", f"127.0.0.1:{port}", "5000"]
        name = "Postfix smtp-sink"
    else:
        command = [sys.executable, "-m", "newsletter", "sink", "--port", str(port),
                   "--out", str(folder / "outbox")]  # fmt: skip
        name = "newsletter sink (aiosmtpd; install Debian's postfix for smtp-sink)"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process, name


def seed(database: Path, count: int) -> None:
    """Active subscribers, inserted in batches (constant memory), validation skipped."""
    conn = sqlite3.connect(database)
    batch = 10_000
    for start in range(0, count, batch):
        rows = (
            (f"reader{i}@example.com", f"Reader {i}", "active", "import", "2026-11-22 00:00:00", 0)
            for i in range(start, min(start + batch, count))
        )
        conn.executemany(
            "INSERT INTO subscribers (email, name, status, source, created_at, bounce_count) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.commit()
    conn.close()


def build_times(factory: MessageFactory) -> tuple[float, float]:
    recipients = [Recipient(i, f"r{i}@example.com", f"Reader {i}") for i in range(2000)]
    samples = []
    for r in recipients:
        start = time.perf_counter()
        factory.build(r)
        samples.append(time.perf_counter() - start)
    slow = []
    for r in recipients[:100]:
        start = time.perf_counter()
        factory.reference(r)
        slow.append(time.perf_counter() - start)
    return statistics.median(samples), statistics.median(slow)


def run_smtp_source(port: int, count: int, size: int) -> float | None:
    smtp_source = shutil.which("smtp-source") or (
        "/usr/sbin/smtp-source" if Path("/usr/sbin/smtp-source").exists() else None
    )
    if not smtp_source:
        return None
    start = time.perf_counter()
    subprocess.run(
        [smtp_source, "-d", "-s", "8", "-m", str(count), "-l", str(size), f"127.0.0.1:{port}"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return count / (time.perf_counter() - start)


def prepare_folder(tmp: str, connections: int, subscribers: int):
    folder = Path(tmp) / "letter"
    scaffold.init(folder)
    port = free_port()
    toml = folder / "newsletter.toml"
    toml.write_text(
        toml.read_text()
        .replace("port = 2525", f"port = {port}")
        .replace('host = "localhost"', 'host = "127.0.0.1"')
        .replace("connections = 4", f"connections = {connections}")
        .replace("rate = 20 ", "rate = 0 ")
    )
    # Migrate in a child process, as a real send finds its database ready: the
    # measured process then holds only what `newsletter send` holds.
    subprocess.run(
        [sys.executable, "-m", "newsletter", "db", "upgrade", "--config", str(toml)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seed(folder / "subscribers.db", subscribers)
    return folder, port, load_config(toml, environ={})


def one_send(log: DeliveryLog, config, round_: int) -> tuple[float, MessageFactory, int]:
    """(msg/s, factory, sent) of a whole send of the sample to every subscriber."""
    new = sending.new_send(sending.plan(config, ISSUE))
    record = log.start(dataclasses.replace(new, slug=f"{new.slug}-round{round_}"))
    factory = MessageFactory(
        sending.stored_prepared(record, "there"), config, Signer(secret_of(config))
    )
    start = time.perf_counter()
    report = asyncio.run(Runner(log, record.id, factory, config.smtp).run())
    return report.sent / (time.perf_counter() - start), factory, report.sent


def main() -> None:
    parser = argparse.ArgumentParser(description="Send benchmark")
    parser.add_argument("-n", "--subscribers", type=int, default=10_000)
    parser.add_argument("-c", "--connections", type=int, default=8)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        folder, port, config = prepare_folder(tmp, args.connections, args.subscribers)
        log = DeliveryLog(db.connect(config))
        sink, sink_name = start_sink(port, folder)
        ours, theirs = [], []
        try:
            # Rounds alternate, so that a noisy moment of the machine hits both sides.
            for round_ in range(args.rounds):
                rate, factory, sent = one_send(log, config, round_)
                ours.append(rate)
                size = len(factory.build(Recipient(1, "reader1@example.com", "Reader 1")))
                baseline_count = min(args.subscribers, SMTP_SOURCE_CAP)
                theirs.append(run_smtp_source(port, baseline_count, size))
                if sent != args.subscribers:
                    raise SystemExit(f"only {sent} of {args.subscribers} were sent")
        finally:
            sink.terminate()
            sink.wait()
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        fast, slow = build_times(factory)
    print(f"subscribers: {args.subscribers:,}; message size {size / 1024:.1f} KB; "
          f"{args.connections} connections; sink: {sink_name}")  # fmt: skip
    print("newsletter send, each round: " + ", ".join(f"{r:,.0f}" for r in ours) + " msg/s")
    print(f"throughput: {statistics.median(ours):,.0f} msg/s median, delivery log included")
    if all(theirs):
        print(f"smtp-source -d -s 8 -l {size}, each round: "
              + ", ".join(f"{r:,.0f}" for r in theirs) + " msg/s")  # fmt: skip
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"ratio newsletter / smtp-source (medians): {ratio:.2f}x  (target >= 0.85x)")
    else:
        print("smtp-source not installed (Debian package postfix): no baseline ratio")
    print(f"per-recipient build: {fast * 1e6:.1f} µs median  (target < 100 µs)")
    print(f"  stdlib EmailMessage baseline: {slow * 1e6:.0f} µs; ratio 1/{slow / fast:,.0f}")
    print(f"peak RSS: {peak_mb:.0f} MB  (flat in N)")


if __name__ == "__main__":
    main()
