"""A long import shares SQLite with other writers, and a failed one leaves the list consistent."""

from __future__ import annotations

import sqlite3
import threading
import time

from newsletter.config import load_config
from newsletter.storage import db, subscribers
from newsletter.storage.models import Status

ROWS = 20_000


def write_list(folder, rows: int = ROWS) -> None:
    lines = "".join(f"person{n}@example.com,Person {n}\n" for n in range(rows))
    (folder / "big.csv").write_text("email,name\n" + lines)


def test_other_writers_get_in_during_a_long_import(cli, folder):
    write_list(folder)
    config = load_config(folder / "newsletter.toml", environ={})
    engine = db.connect(config)  # a second, independent connection pool
    waits: list[float] = []
    done = threading.Event()

    def signups() -> None:
        n = 0
        while not done.is_set():
            started = time.monotonic()
            with db.session(engine) as session:
                subscribers.add(session, f"signup{n}@example.com", source="form")
            waits.append(time.monotonic() - started)
            n += 1
            time.sleep(0.01)

    writer = threading.Thread(target=signups)
    writer.start()
    try:
        started = time.monotonic()
        result = cli("subscribers", "import", "big.csv")
        took = time.monotonic() - started
    finally:
        done.set()
        writer.join()
    assert result.exit_code == 0, result.output
    assert f"{ROWS} added, 0 updated, 0 unchanged" in result.output
    # Each chunk holds the write lock for milliseconds; one transaction for the
    # whole file made every signup wait for the whole import (1.5 s here).
    # (A bound relative to the import's own time: a loaded machine slows both.)
    assert max(waits) < took / 3, f"a signup waited {max(waits):.2f} s for a {took:.1f} s import"
    during = len(waits)
    assert during >= 10, f"only {during} signup(s) in a {took:.1f} s import"
    print(f"import {took:.2f} s; {during} signups, longest wait {max(waits) * 1000:.0f} ms")
    with db.session(engine) as session:
        assert subscribers.counts(session)[Status.active] == ROWS + during
    engine.dispose()


def test_a_database_failure_part_way_keeps_the_committed_chunks(cli, folder, monkeypatch):
    """Another program takes the write lock after the first chunks and keeps it:
    the import stops, says where, and importing again finishes the job."""
    write_list(folder)
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 100)
    path = folder / "subscribers.db"
    holding = threading.Event()
    release = threading.Event()

    def take_the_lock() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        while conn.execute("SELECT count(*) FROM subscribers").fetchone()[0] < 1000:
            time.sleep(0.002)
        conn.execute("BEGIN IMMEDIATE")
        holding.set()
        release.wait(10)
        conn.execute("ROLLBACK")
        conn.close()

    holder = threading.Thread(target=take_the_lock)
    holder.start()
    try:
        result = cli("subscribers", "import", "big.csv")
    finally:
        release.set()
        holder.join()
    assert holding.is_set()
    assert result.exit_code == 1 and result.stdout == ""
    first, last = result.stderr.splitlines()
    assert first == (
        "error: database.url: subscribers.db is busy (another program held it for over "
        "0.1 s); try again when that program is done"
    )
    conn = sqlite3.connect(path)
    kept = conn.execute("SELECT count(*) FROM subscribers").fetchone()[0]
    conn.close()
    assert kept % 500 == 0 and 1000 <= kept < ROWS  # whole chunks only
    assert last == (
        f"error: big.csv: the import stopped at line {kept + 2}; {kept} added, 0 updated, "
        f"0 unchanged, 0 kept unsubscribed or bounced from lines 2 to {kept + 1}, which stay "
        "imported; fix the problem and import the file again (that is safe: rows already "
        "imported are left as they are)"
    )
    again = cli("subscribers", "import", "big.csv")
    assert again.output == (
        f"Imported big.csv: {ROWS - kept} added, 0 updated, {kept} unchanged, 0 kept "
        "unsubscribed or bounced.\n"
    )
