"""The rate-limit storage itself, on SQLite and PostgreSQL: hits from many threads and
many processes at once all count, windows end, ended windows are swept away, and the
table holds keyed hashes only."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from limits import parse
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import create_engine, func, select

from newsletter.config import load_config
from newsletter.storage import db
from newsletter.storage.models import RateLimit
from newsletter.storage.ratelimits import RateLimitStorage
from newsletter.tokens import secret_of

pytestmark = pytest.mark.usefixtures("backend")
KEY = "LIMITER/ip/203.0.113.9/1000/1/minute"


@pytest.fixture
def settings(folder, backend):
    return load_config(folder / "newsletter.toml", environ={})


@pytest.fixture
def engine(settings):
    engine = db.connect(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def storage(engine, settings):
    return RateLimitStorage(engine, secret_of(settings))


def rows(engine) -> list[tuple[str, int, float]]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(select(RateLimit.__table__))]


def test_hits_from_many_threads_at_once_all_count(storage):
    threads, each = 8, 40
    start = threading.Barrier(threads)
    counts: list[int] = []

    def hit():
        start.wait()
        mine = [storage.incr(KEY, 60) for _ in range(each)]
        counts.extend(mine)  # list.extend is atomic under the GIL

    workers = [threading.Thread(target=hit) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # Every hit saw its own count: none lost, none counted twice.
    assert sorted(counts) == list(range(1, threads * each + 1))
    assert storage.get(KEY) == threads * each


HITTER = """
import json, sys, time
from pathlib import Path
from newsletter.config import load_config
from newsletter.storage import db
from newsletter.storage.ratelimits import RateLimitStorage
from newsletter.tokens import secret_of

settings = load_config(Path(sys.argv[1]), environ={})
storage = RateLimitStorage(db.connect(settings), secret_of(settings))
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all start together
print(json.dumps([storage.incr(sys.argv[3], 60) for _ in range(int(sys.argv[4]))]))
"""


def test_hits_from_several_processes_at_once_all_count(storage, folder):
    processes, each = 4, 60
    start_at = str(time.time() + 3)  # after every process has imported and connected
    args = [str(folder / "newsletter.toml"), start_at, KEY, str(each)]
    running = [
        subprocess.Popen([sys.executable, "-c", HITTER, *args], stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    counts = []
    for process in running:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        counts.extend(json.loads(out))
    assert sorted(counts) == list(range(1, processes * each + 1))
    assert storage.get(KEY) == processes * each  # and this process sees them all


def test_a_window_ends_and_the_next_hit_starts_a_new_one(storage):
    limiter, item = FixedWindowRateLimiter(storage), parse("2 per 2 seconds")
    assert [limiter.hit(item, "ip", "a") for _ in range(3)] == [True, True, False]
    assert not limiter.test(item, "ip", "a")
    ends = storage.get_expiry(item.key_for("ip", "a"))
    assert time.time() < ends <= time.time() + 2
    assert limiter.hit(item, "ip", "b")  # another key has a window of its own
    time.sleep(max(0.0, ends - time.time()) + 0.05)
    assert storage.get(item.key_for("ip", "a")) == 0  # an ended window counts as empty
    assert limiter.test(item, "ip", "a")
    assert limiter.hit(item, "ip", "a") and storage.get(item.key_for("ip", "a")) == 1
    assert storage.get_expiry(item.key_for("ip", "a")) > ends  # a new window


def test_ended_windows_are_swept_away_now_and_then(engine, settings):
    secret = secret_of(settings)
    lazy = RateLimitStorage(engine, secret, sweep_every=3600)
    lazy.incr("short", 1)  # the first hit sweeps (nothing ended yet)
    lazy.incr("long", 3600)
    time.sleep(1.05)
    lazy.incr("long", 3600)
    assert len(rows(engine)) == 2  # the next sweep is an hour away
    # Another process (or a restart) sweeps on its first hit.
    RateLimitStorage(engine, secret, sweep_every=3600).incr("other", 3600)
    assert sorted(hits for _, hits, _ in rows(engine)) == [1, 2]  # other, long
    lazy.incr("short", 1)
    time.sleep(1.05)
    assert lazy.sweep() == 1 and len(rows(engine)) == 2


def test_the_table_holds_keyed_hashes_not_addresses(engine, settings, storage):
    key = "LIMITER/address/ana@example.com/3/1/hour"
    storage.incr(key, 3600)
    [(stored, hits, _)] = rows(engine)
    assert hits == 1 and len(stored) == 64 and "ana" not in stored
    assert stored == storage.hashed(key)
    other_secret = RateLimitStorage(engine, secret_of(settings) + "x")
    assert other_secret.hashed(key) != stored  # keyed: a list of addresses cannot undo it
    assert other_secret.get(key) == 0


def test_clear_reset_and_check(storage, tmp_path):
    storage.incr("a", 60)
    storage.incr("b", 60, amount=3)
    assert storage.get("b") == 3
    storage.clear("b")
    assert storage.get("b") == 0 and storage.get("a") == 1
    assert storage.check()
    assert storage.reset() == 1 and storage.get("a") == 0
    assert time.time() - 1 < storage.get_expiry("a") <= time.time()  # no window: now
    empty = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no rate_limits table
    assert not RateLimitStorage(empty, "s" * 32).check()


def test_the_upsert_is_one_statement(storage, engine):
    """No read-modify-write in Python: a hit runs exactly one statement on the table
    (plus PostgreSQL's SET LOCAL), which is what keeps concurrent hits whole."""
    from sqlalchemy import event

    seen: list[str] = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    storage.incr(KEY, 60)  # the first hit also sweeps; count the next one
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert storage.incr(KEY, 60) == 2
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    on_table = [s for s in seen if "rate_limits" in s]
    assert len(on_table) == 1 and "ON CONFLICT" in on_table[0], seen
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(RateLimit)).scalar() == 1
