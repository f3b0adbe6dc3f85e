"""Send benchmark: N subscribers through real SMTP into a sink on loopback,
with the delivery log written as in production, against Postfix's own
`smtp-source` pushing the same number of same-sized messages into the same
sink in the same run (the ratio is the figure that holds on a noisy machine).

Targets on the project's 2-core machine: throughput at least 0.5x smtp-source;
per-recipient build under 100 µs; peak RSS under 100 MB and flat from 10,000
to 1,000,000 subscribers.

    make bench                           # 10,000 subscribers
    .venv/bin/python bench/send.py -n 100000
    .venv/bin/python bench/send.py -n 1000000
"""

from __future__ import annotations

import argparse
import asyncio
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


def main() -> None:
    parser = argparse.ArgumentParser(description="Send benchmark")
    parser.add_argument("-n", "--subscribers", type=int, default=10_000)
    parser.add_argument("-c", "--connections", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        folder = Path(tmp) / "letter"
        scaffold.init(folder)
        port = free_port()
        toml = folder / "newsletter.toml"
        toml.write_text(
            toml.read_text()
            .replace("port = 2525", f"port = {port}")
            .replace('host = "localhost"', 'host = "127.0.0.1"')
            .replace("connections = 4", f"connections = {args.connections}")
            .replace("rate = 20 ", "rate = 0 ")
        )
        # Migrate in a child process, as a real send finds its database ready: the
        # measured process then holds only what `newsletter send` holds.
        subprocess.run(
            [sys.executable, "-m", "newsletter", "db", "upgrade", "--config", str(toml)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seed(folder / "subscribers.db", args.subscribers)
        config = load_config(toml, environ={})
        engine = db.connect(config)

        log = DeliveryLog(engine)
        record = log.start(sending.new_send(sending.plan(config, ISSUE)))
        prepared = sending.stored_prepared(record, "there")
        factory = MessageFactory(prepared, config, Signer(secret_of(config)))
        size = len(factory.build(Recipient(1, "reader1@example.com", "Reader 1")))
        fast, slow = build_times(factory)

        sink, sink_name = start_sink(port, folder)
        try:
            start = time.perf_counter()
            report = asyncio.run(Runner(log, record.id, factory, config.smtp).run())
            elapsed = time.perf_counter() - start
            ours = report.sent / elapsed
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            baseline_count = min(args.subscribers, SMTP_SOURCE_CAP)
            theirs = run_smtp_source(port, baseline_count, size)
        finally:
            sink.terminate()
            sink.wait()

        counts = log.counts(record.id)
        print(
            f"subscribers: {args.subscribers:,}; message size {size / 1024:.1f} KB; "
            f"sink: {sink_name}"
        )
        print(f"sent {report.sent:,} in {elapsed:.2f} s on {args.connections} connections "
              f"(delivery log: {dict((k.value, v) for k, v in counts.items())})")  # fmt: skip
        print(f"throughput: {ours:,.0f} msg/s, delivery logging included")
        if theirs:
            print(f"smtp-source -d -s 8 -m {baseline_count:,} -l {size}: {theirs:,.0f} msg/s")
            print(f"ratio newsletter / smtp-source: {ours / theirs:.2f}x  (target >= 0.5x)")
        else:
            print("smtp-source not installed (Debian package postfix): no baseline ratio")
        print(f"per-recipient build: {fast * 1e6:.1f} µs median  (target < 100 µs)")
        print(f"  stdlib EmailMessage baseline: {slow * 1e6:.0f} µs; ratio 1/{slow / fast:,.0f}")
        print(f"peak RSS: {peak_mb:.0f} MB  (target < 100 MB, flat in N)")
        if report.sent != args.subscribers:
            raise SystemExit(f"only {report.sent} of {args.subscribers} were sent")


if __name__ == "__main__":
    main()
