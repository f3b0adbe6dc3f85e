"""Nobody can learn whether an address is subscribed from how long the signup takes:
a known (active) address and a new one must cost the same, within a small bound, on
either backend; and they do the same database work, statement for statement where
the rate limits are counted, whose cost the timings alone cannot always tell apart."""

from __future__ import annotations

import random
import sqlite3
import statistics
import threading
import time

import pytest
from conftest import use_smtp
from fastapi.testclient import TestClient
from sqlalchemy import event

from newsletter.config import load_config
from newsletter.storage import db
from newsletter.storage.models import RateLimit
from newsletter.web import create_app

ROUNDS = 200


def compare(ours: list[float], theirs: list[float]) -> tuple[float, float]:
    """How much slower ours are than theirs, as Mann-Whitney's test sees it: the median
    of all pairwise differences (the Hodges-Lehmann shift), and the share of pairs in
    which ours is the slower (U / n·m, ties counting half). (0, 0.5) when equal."""
    differences = [a - b for a in ours for b in theirs]
    slower = sum((d > 0) + (d == 0) / 2 for d in differences) / len(differences)
    return statistics.median(differences), slower


def fastest_half(times: list[float]) -> list[float]:
    """A busy machine only ever adds time, in bursts that can land more on one branch
    in a run; a request's own cost shows in its fast runs."""
    return sorted(times)[: len(times) // 2]


def test_compare_sees_a_shift_and_its_absence():
    assert compare([2.0, 3.0, 4.0], [0.0, 1.0, 1.5]) == (2.0, 1.0)
    assert compare([0.0, 1.0], [2.0, 3.0]) == (-2.0, 0.0)
    assert compare([1.0, 2.0], [1.0, 2.0]) == (0.0, 0.5)


@pytest.fixture
def settings(folder, smtp, cli, backend):
    """Limits out of the way, counted in the database as always; known@ is active."""
    toml = folder / "newsletter.toml"
    toml.write_text(
        toml.read_text() + '\n[web]\nlimit_per_ip = "100000/minute"\n'
        'limit_per_address = "100000/hour"\nconfirmations_per_day = 50\n'
    )
    use_smtp(folder, smtp.port)
    assert cli("subscribers", "add", "known@example.com").exit_code == 0
    return load_config(toml, environ={})


def test_signup_takes_as_long_for_a_known_address_as_for_a_new_one(settings, smtp):
    times: dict[str, list[float]] = {"known": [], "new": []}
    order = random.Random(8058)  # noqa: S311 (an order to test in, not a secret)
    with TestClient(create_app(settings)) as client:
        for n in range(ROUNDS + 20):  # the first 20 rounds warm up caches, not measured
            # A random order in each round: neither branch always follows the other,
            # nor meets the emails (sent a while after each new signup) more often.
            for kind in order.sample(("new", "known"), 2):
                email = "known@example.com" if kind == "known" else f"new{n}@example.com"
                start = time.perf_counter()
                response = client.post("/subscribe", data={"email": email, "name": "Pat"})
                elapsed = time.perf_counter() - start
                assert response.status_code == 200
                if n >= 20:
                    times[kind].append(elapsed)
        deadline = time.monotonic() + 30
        while len(smtp.handler.received) < ROUNDS + 20:  # each new address was mailed
            assert time.monotonic() < deadline, f"{len(smtp.handler.received)} emails arrived"
            time.sleep(0.05)

    known, new = fastest_half(times["known"]), fastest_half(times["new"])
    shift, slower = compare(known, new)
    # One transaction more on one branch is ~15% of a signup on PostgreSQL, 5-10% on
    # SQLite; equal work stays under 5% on a loaded machine.
    bound = max(0.0003, 0.10 * min(statistics.median(known), statistics.median(new)))
    assert abs(shift) < bound, (
        f"a known address answers {shift * 1e3:+.3f} ms slower than a new one (bound "
        f"{bound * 1e3:.3f} ms; slower in {slower:.0%} of pairs); medians: known "
        f"{statistics.median(times['known']) * 1e3:.3f} ms, new "
        f"{statistics.median(times['new']) * 1e3:.3f} ms"
    )


class Work:
    """What one request asks of the database: its transactions, and its statements
    on the rate-limit table (as SQL, parameters aside)."""

    def __init__(self, engine) -> None:
        self.commits = 0
        self.limits: list[str] = []
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "before_cursor_execute", self._statement)

    def _commit(self, connection) -> None:
        if threading.current_thread().name != "outbox":  # the courier mailing new@
            self.commits += 1

    def _statement(self, connection, cursor, statement, parameters, context, many) -> None:
        if RateLimit.__tablename__ in statement:
            self.limits.append(" ".join(statement.split()))

    def of(self, client: TestClient, email: str) -> tuple[int, list[str]]:
        self.commits, self.limits = 0, []
        assert client.post("/subscribe", data={"email": email, "name": "Pat"}).status_code == 200
        return self.commits, self.limits


def test_a_known_address_does_the_database_work_of_a_new_one(settings):
    """A new address's confirmation is counted against its daily cap in one more
    write; a known one must make that write too (adding nothing), or it answers
    one transaction sooner: about 2 ms on PostgreSQL, 0.4 ms on SQLite."""
    with TestClient(create_app(settings)) as client:
        work = Work(client.app.state.web.engine)
        work.of(client, "warm@example.com")  # the first hit also sweeps ended windows
        new, known = work.of(client, "new@example.com"), work.of(client, "known@example.com")
        assert known == new
        assert new[0] >= 4 and len(new[1]) == 4  # ip, address, the cap's test, the cap's hit
        # Again, now that both have rows: the statements are the same either way.
        assert work.of(client, "known@example.com") == work.of(client, "new@example.com")


def test_the_daily_cap_counts_only_confirmation_emails(settings):
    """An active address that signs up again gets no email, so it uses none of its
    confirmations: if it leaves later that day, the form still mails it a link."""
    with TestClient(create_app(settings)) as client:
        web = client.app.state.web
        for email in ("known@example.com", "known@example.com", "new@example.com"):
            assert client.post("/subscribe", data={"email": email}).status_code == 200
        sent = {
            email: web.limiter.storage.get(web.limits.per_day.key_for("confirmation", email))
            for email in ("known@example.com", "new@example.com")
        }
    assert sent == {"known@example.com": 0, "new@example.com": 1}


def test_a_signup_waiting_on_the_database_holds_up_no_other_visitor(folder):
    """The signup's writes wait for a locked database in a worker thread: meanwhile
    the event loop serves everyone else, and the signup still gets its 503."""
    config = load_config(folder / "newsletter.toml", environ={})
    engine = db.connect(config)
    # A short busy timeout stands in for the default 10 s one.
    event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout=1500"))
    engine.dispose()  # the pooled connection db.connect opened waits the default time
    holder = sqlite3.connect(config.root / "subscribers.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # e.g. a long import holding the write lock
    signups = []
    try:
        with TestClient(create_app(config, engine=engine)) as client:
            waiting = threading.Thread(
                target=lambda: signups.append(client.post("/subscribe", data={"email": "a@b.cd"}))
            )
            waiting.start()
            time.sleep(0.3)  # the signup is now waiting on the lock
            start = time.perf_counter()
            assert client.get("/").status_code == 200
            elapsed = time.perf_counter() - start
            assert waiting.is_alive() and elapsed < 0.6, f"the form took {elapsed:.2f} s"
            waiting.join(10)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [response.status_code for response in signups] == [503]
