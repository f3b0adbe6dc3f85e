"""Shared-send benchmark on PostgreSQL: one `newsletter send` alone, then with one
and with three `newsletter worker`s joining it, into Postfix `smtp-sink`; the
figure is each total against one process's in the same run. With `--relays`
every process gets its own relay throttled to R messages a second: the target
is a total of at least 0.9 x N x R (the relays are the limit, not the engine).

Throughput is read from the delivery log (first to last `sent_at`), so process
start-up and the issue's check are not counted. Peak RSS is each process's own
(wait4), the figure that must stay flat from 10,000 to 1,000,000 subscribers.

    .venv/bin/python bench/workers.py                    # 20,000 subscribers
    .venv/bin/python bench/workers.py --relays --rate 200
    .venv/bin/python bench/workers.py -n 1000000 --processes 1

PostgreSQL: NEWSLETTER_BENCH_POSTGRES_URL (or NEWSLETTER_TEST_POSTGRES_URL, or the
local cluster's socket) names a server where a throwaway database is created.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from crash import newsletter
from send import free_port, start_sink

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
DEFAULT_URL = "postgresql:///postgres?host=/var/run/postgresql"


def admin_engine():
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = (
        os.environ.get("NEWSLETTER_BENCH_POSTGRES_URL")
        or os.environ.get("NEWSLETTER_TEST_POSTGRES_URL")
        or DEFAULT_URL
    )
    return create_engine(
        make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )


def prepare(tmp: str, url: str, ports: list[int], args) -> Path:
    from newsletter.compose import scaffold

    folder = Path(tmp) / "letter"
    scaffold.init(folder)
    toml = folder / "newsletter.toml"
    text = toml.read_text().replace('url = "sqlite:///subscribers.db"', f'url = "{url}"')
    text = (
        text.replace("port = 2525", f"port = {ports[0]}")
        .replace('host = "localhost"', 'host = "127.0.0.1"')
        .replace("connections = 4", f"connections = {args.connections}")
        .replace("rate = 20 ", "rate = 0 ")
    )
    toml.write_text(text + '\n[schedule]\ncheck_every = "0.2s"\n')
    (folder / "base.toml").write_text(toml.read_text())
    subprocess.run([sys.executable, "-m", "newsletter", "db", "upgrade"], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return folder


def use_relays(folder: Path, ports: list[int], args) -> None:
    """One relay per process, each throttled to the rate: N processes, N x R at most."""
    text = (folder / "base.toml").read_text()
    for i, port in enumerate(ports):
        text += (
            f'\n[[smtp.relays]]\nname = "relay{i}"\nhost = "127.0.0.1"\nport = {port}\n'
            f'security = "none"\nconnections = {args.connections}\nrate = {args.rate}\n'
        )
    (folder / "newsletter.toml").write_text(text)


def seed(engine, count: int) -> None:
    raw = engine.raw_connection()
    with (
        raw.driver_connection.cursor() as cur,
        cur.copy(
            "COPY subscribers (email, name, status, source, created_at, bounce_count, "
            "bounce_score) FROM STDIN"
        ) as copy,
    ):
        for i in range(count):
            copy.write_row((f"reader{i}@example.com", f"Reader {i}", "active", "import",
                            "2026-11-22 00:00:00+00", 0, 0.0))  # fmt: skip
    raw.commit()
    raw.close()


def reset(engine) -> None:
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("DELETE FROM deliveries; DELETE FROM sends; DELETE FROM workers"))


def wait_rss(process: subprocess.Popen) -> float:
    """Wait for the process; its own peak RSS in MB."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024


def one_round(folder: Path, engine, processes: int) -> tuple[float, list[float], int]:
    """(msg/s, peak RSS of each process, workers that sent) of one whole send."""
    from sqlalchemy import text

    reset(engine)
    workers = [newsletter(folder, "worker", out=subprocess.PIPE) for _ in range(processes - 1)]
    for worker in workers:
        worker.stdout.readline()  # "worker: ..." once it is up
    sender = newsletter(folder, "send", ISSUE, "--yes")
    rss = [wait_rss(sender)]
    if sender.returncode != 0:
        raise SystemExit(f"the send failed: {sender.stderr.read()}")
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        rss.append(wait_rss(worker))
    tally = text(
        "SELECT min(sent_at), max(sent_at), count(*), count(DISTINCT worker) "
        "FROM deliveries WHERE state = 'sent'"
    )
    with engine.connect() as conn:
        first, last, sent, by = conn.execute(tally).one()
    return sent / max((last - first).total_seconds(), 1e-3), rss, by


def main() -> None:
    parser = argparse.ArgumentParser(description="Shared-send benchmark on PostgreSQL")
    parser.add_argument("-n", "--subscribers", type=int, default=20_000)
    parser.add_argument("-c", "--connections", type=int, default=4)
    parser.add_argument("--processes", default="1,2,4", help="process counts to compare")
    parser.add_argument("--relays", action="store_true", help="one throttled relay per process")
    parser.add_argument("--rate", type=float, default=200.0, help="each relay's rate (--relays)")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    try:
        admin = admin_engine()
        admin.connect().close()
    except Exception as exc:
        print(f"workers bench skipped: no PostgreSQL to run on ({exc.__class__.__name__})")
        return
    name = f"nl_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        run(args, counts, admin, name)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(args, counts: list[int], admin, name: str) -> None:
    from sqlalchemy import create_engine

    url = admin.url.set(database=name)
    engine = create_engine(url)
    relays = max(counts) if args.relays else 1
    ports = [free_port() for _ in range(relays)]
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        sinks = [start_sink(port, Path(tmp))[0] for port in ports]
        try:
            folder = prepare(tmp, url.render_as_string(hide_password=False), ports, args)
            started = time.perf_counter()
            seed(engine, args.subscribers)
            throttled = f"; relays throttled to {args.rate:g}/s each" if args.relays else ""
            print(f"subscribers: {args.subscribers:,} (seeded in "
                  f"{time.perf_counter() - started:.1f} s); {args.connections} connections "
                  f"per process{throttled}")  # fmt: skip
            results = {}
            for n in counts:
                if args.relays:
                    use_relays(folder, ports[:n], args)
                results[n] = one_round(folder, engine, n)
        finally:
            for sink in sinks:
                sink.terminate()
                sink.wait()
    report(args, results)


def report(args, results: dict[int, tuple[float, list[float], int]]) -> None:
    base = results[min(results)][0]
    for n, (rate, rss, by) in results.items():
        line = (f"{n} process(es): {rate:,.0f} msg/s ({rate / base:.2f}x one), "
                f"{by} sent, peak RSS " + "/".join(f"{r:.0f}" for r in rss) + " MB")  # fmt: skip
        if args.relays:
            line += f"; {rate / (n * args.rate):.2f} of {n} x {args.rate:g}/s (target >= 0.9)"
        print(line)


if __name__ == "__main__":
    main()
