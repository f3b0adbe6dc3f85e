"""The outbox: signup and confirm only write the mail down; `deliver_due` (and the
courier inside `serve`) delivers it over one connection, retries what a server
refused for now or could not take at all, and never sends a mail twice. Real
SQLite (or PostgreSQL) files, a real SMTP server on loopback, real HTTP."""

from __future__ import annotations

import datetime as dt
import re
import statistics
import threading
import time

import pytest
from conftest import use_smtp
from fastapi.testclient import TestClient
from smtp_server import SmtpServer, free_port
from sqlalchemy import select, update

from newsletter.config import load_config
from newsletter.service.outbox import deliver_due
from newsletter.storage import db
from newsletter.storage.models import Outbox, OutboxState, utcnow
from newsletter.storage.outbox import OutboxLog, enqueue
from newsletter.web import create_app

pytestmark = pytest.mark.usefixtures("backend")


def settings(folder, port: int, smtp: dict | None = None, **web):
    use_smtp(folder, port, **(smtp or {}))
    if web:
        toml = folder / "newsletter.toml"
        lines = "".join(f"{k} = {v}\n" for k, v in web.items())
        toml.write_text(toml.read_text() + f"\n[web]\n{lines}")
    return load_config(folder / "newsletter.toml", environ={})


def rows(config) -> list[Outbox]:
    engine = db.connect(config)
    try:
        with db.session(engine) as s:
            return list(s.scalars(select(Outbox).order_by(Outbox.id)))
    finally:
        engine.dispose()


def make_due(config) -> None:
    """Time passes: every pending mail is due now."""
    engine = db.connect(config)
    with db.session(engine) as s:
        s.execute(update(Outbox).values(next_attempt_at=utcnow() - dt.timedelta(seconds=1)))
    engine.dispose()


def aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def queue(config, *emails: str, kind: str = "confirm") -> None:
    engine = db.connect(config)
    for email in emails:
        enqueue(engine, kind, email, None, {"confirm_url": f"https://news.example.com/c/{email}"})
    engine.dispose()


def test_signup_with_the_server_down_answers_at_once_and_mails_when_it_is_back(folder):
    port = free_port()  # nothing listens here yet
    config = settings(folder, port)
    client = TestClient(create_app(config))  # no lifespan: only deliver_due delivers here
    times = []
    for n in range(9):
        start = time.perf_counter()
        answer = client.post("/subscribe", data={"email": f"reader{n}@example.com"})
        times.append(time.perf_counter() - start)
        assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert statistics.median(times) < 0.2, times
    waiting = rows(config)
    assert [(r.kind, r.email, r.state) for r in waiting] == [
        ("confirm", f"reader{n}@example.com", OutboxState.pending) for n in range(9)
    ]

    reports = deliver_due(config)  # still down: nothing lost, nothing counted
    assert len(reports) == 9 and all("not sent, again in" in line for line in reports)
    assert all("cannot connect" in line for line in reports)
    after = rows(config)
    assert {(r.state, r.attempts) for r in after} == {(OutboxState.pending, 0)}
    assert all("cannot connect" in r.last_reply for r in after)
    assert all(aware(r.next_attempt_at) > utcnow() for r in after)
    assert deliver_due(config) == []  # not due yet

    make_due(config)
    with SmtpServer(port) as server:
        reports = deliver_due(config)
        assert reports == [f"confirm mail to reader{n}@example.com: sent" for n in range(9)]
        assert deliver_due(config) == []
        assert sorted(r.rcpt for r in server.handler.received) == sorted(
            f"reader{n}@example.com" for n in range(9)
        )
        assert server.handler.sessions == 1  # one connection for the batch
    mail = server.handler.received[0].message
    assert mail["Subject"] == "Confirm your subscription to The Pipeline Weekly"
    assert "/confirm?token=" in mail.get_body(("plain",)).get_content()
    assert {(r.state, r.attempts) for r in rows(config)} == {(OutboxState.sent, 1)}
    assert all(r.sent_at is not None and r.last_reply.startswith("250") for r in rows(config))


def test_a_known_address_enqueues_nothing_and_changes_no_row(folder, cli):
    config = settings(folder, free_port())
    assert cli("subscribers", "add", "known@example.com").exit_code == 0
    queue(config, "other@example.com")
    before = [(r.id, r.state, r.next_attempt_at, r.values) for r in rows(config)]
    client = TestClient(create_app(config))
    assert client.post("/subscribe", data={"email": "known@example.com"}).status_code == 200
    assert [(r.id, r.state, r.next_attempt_at, r.values) for r in rows(config)] == before


def test_confirming_enqueues_the_welcome_unless_it_is_turned_off(folder):
    config = settings(folder, free_port())
    client = TestClient(create_app(config))
    client.post("/subscribe", data={"email": "ana@example.com"})
    link = re.search(r"/confirm\?token=\S+", rows(config)[0].values).group(0).rstrip('"}')
    assert client.post(link).status_code == 200  # the button's POST confirms
    welcome = rows(config)[1]
    assert (welcome.kind, welcome.email, welcome.state) == ("welcome", "ana@example.com", "pending")
    assert welcome.subscriber_id is not None and "/unsubscribe?token=" in welcome.values

    off = settings(folder, free_port(), welcome_email="false")
    quiet = TestClient(create_app(off))
    quiet.post("/subscribe", data={"email": "bo@example.com"})
    link = re.search(r"/confirm\?token=\S+", rows(off)[-1].values).group(0).rstrip('"}')
    assert quiet.post(link).status_code == 200
    assert [r.kind for r in rows(off)] == ["confirm", "welcome", "confirm"]


def test_a_permanent_refusal_fails_at_once_and_is_never_retried(folder, smtp):
    config = settings(folder, smtp.port)
    smtp.handler.script("gone@example.com", 550)
    queue(config, "gone@example.com", "ok@example.com")
    reports = deliver_due(config)
    assert reports[0].startswith("confirm mail to gone@example.com: refused for good (550")
    assert reports[1] == "confirm mail to ok@example.com: sent"
    gone, ok = rows(config)
    assert (gone.state, gone.attempts, gone.sent_at) == (OutboxState.failed, 1, None)
    assert gone.last_reply.startswith("550")
    assert ok.state == OutboxState.sent
    make_due(config)
    assert deliver_due(config) == []
    assert [r.rcpt for r in smtp.handler.received] == ["ok@example.com"]


def test_a_temporary_refusal_backs_off_doubling_then_gives_up(folder, smtp):
    config = settings(folder, smtp.port, {"retry_delay": 30}, outbox_max_attempts=3)
    smtp.handler.script("busy@example.com", 451)
    queue(config, "busy@example.com")
    waits = []
    for _ in range(2):
        before = utcnow()
        (report,) = deliver_due(config)
        assert "again in" in report and "451" in report, report
        (row,) = rows(config)
        waits.append((aware(row.next_attempt_at) - before).total_seconds())
        assert row.state == OutboxState.pending
        assert deliver_due(config) == []  # not before its time
        make_due(config)
    assert 30 <= waits[0] < 35 and 60 <= waits[1] < 65, waits
    (report,) = deliver_due(config)
    assert report.startswith("confirm mail to busy@example.com: given up after 3 attempts")
    (row,) = rows(config)
    assert (row.state, row.attempts) == (OutboxState.failed, 3)
    assert smtp.handler.received == []


def test_waits_are_capped_at_an_hour(folder, smtp):
    config = settings(folder, smtp.port, {"retry_delay": 30}, outbox_max_attempts=20)
    smtp.handler.script("busy@example.com", 451)
    queue(config, "busy@example.com")
    engine = db.connect(config)
    with db.session(engine) as s:
        s.execute(update(Outbox).values(attempts=9))  # the tenth wait would be 4 h 16 min
    engine.dispose()
    before = utcnow()
    (report,) = deliver_due(config)
    assert "tried 10 time(s), again in 60 min" in report
    wait = (aware(rows(config)[0].next_attempt_at) - before).total_seconds()
    assert 3600 <= wait < 3605


def test_an_outage_waits_as_long_as_the_mail_has_waited(folder):
    config = settings(folder, free_port(), {"retry_delay": 30})
    queue(config, "ana@example.com")
    engine = db.connect(config)
    with db.session(engine) as s:
        s.execute(update(Outbox).values(created_at=utcnow() - dt.timedelta(minutes=10)))
    engine.dispose()
    before = utcnow()
    (report,) = deliver_due(config)
    assert "not sent, again in 10 min" in report
    (row,) = rows(config)
    wait = (aware(row.next_attempt_at) - before).total_seconds()
    assert 600 <= wait < 605 and row.attempts == 0


def test_a_dropped_connection_retries_that_mail_and_reconnects_for_the_rest(folder, smtp):
    config = settings(folder, smtp.port)
    smtp.handler.script("drop@example.com", "drop", 250)
    queue(config, "a@example.com", "drop@example.com", "b@example.com")
    reports = deliver_due(config)
    assert reports[0].endswith(": sent") and reports[2].endswith(": sent")
    assert "drop@example.com: tried 1 time(s)" in reports[1]
    assert smtp.handler.sessions == 2
    make_due(config)
    assert deliver_due(config) == ["confirm mail to drop@example.com: sent"]
    assert sorted(r.rcpt for r in smtp.handler.received) == [
        "a@example.com", "b@example.com", "drop@example.com",
    ]  # fmt: skip


def test_a_mail_that_cannot_be_built_is_retried_not_lost(folder, smtp):
    config = settings(folder, smtp.port)
    queue(config, "ana@example.com", kind="nonsense")
    (report,) = deliver_due(config)
    assert report.startswith("nonsense mail to ana@example.com: tried 1 time(s)")
    assert "cannot be built" in report
    (row,) = rows(config)
    assert (row.state, row.attempts) == (OutboxState.pending, 1)
    assert smtp.handler.sessions == 0  # no connection opened for nothing


def test_a_claimed_mail_is_nobody_elses_while_it_is_being_sent(folder, smtp):
    config = settings(folder, smtp.port)
    emails = [f"reader{n}@example.com" for n in range(12)]
    queue(config, *emails)
    holding, other_done = threading.Event(), threading.Event()
    first: list[str] = []

    def held() -> bool:  # the first deliverer waits in mid-batch until the other is done
        holding.set()
        other_done.wait(30)
        return False

    def deliver_first() -> None:
        first.extend(deliver_due(config, limit=4, should_stop=held))

    thread = threading.Thread(target=deliver_first)
    thread.start()
    assert holding.wait(30), "the first deliverer claimed nothing"
    second: list[str] = []
    while batch := deliver_due(config, limit=3):
        second += batch
    other_done.set()
    thread.join(30)
    assert len(first) == 4 and len(second) == 8, (first, second)
    assert sorted(r.rcpt for r in smtp.handler.received) == sorted(emails)


def test_two_deliverers_at_once_never_send_a_mail_twice(folder, smtp):
    config = settings(folder, smtp.port)
    emails = [f"reader{n}@example.com" for n in range(60)]
    queue(config, *emails)
    start = threading.Barrier(2)
    reports: list[list[str]] = [[], []]

    def deliverer(n: int) -> None:
        engine = db.connect(config)  # its own, like a worker process beside serve
        start.wait()
        while batch := deliver_due(config, engine, limit=4):
            reports[n] += batch
        engine.dispose()

    threads = [threading.Thread(target=deliverer, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(r.rcpt for r in smtp.handler.received) == sorted(emails)
    assert len(reports[0]) + len(reports[1]) == 60
    assert OutboxLog(db.connect(config)).counts() == {"pending": 0, "sent": 60, "failed": 0}


def test_the_worker_delivers_the_outbox(cli, folder, smtp):
    config = settings(folder, smtp.port)
    queue(config, "ana@example.com", "bo@example.com")
    result = cli("worker", "--once")
    assert result.exit_code == 0, result.output
    assert "confirm mail to ana@example.com: sent" in result.output
    assert sorted(smtp.handler.by_rcpt()) == ["ana@example.com", "bo@example.com"]
    assert {r.state for r in rows(config)} == {OutboxState.sent}


def test_erasing_someone_deletes_their_mail_waiting_in_the_outbox(cli, folder):
    config = settings(folder, free_port())  # nothing listens: the mail waits
    client = TestClient(create_app(config))
    client.post("/subscribe", data={"email": "ana@example.com"})
    queue(config, "bo@example.com")
    assert [r.email for r in rows(config)] == ["ana@example.com", "bo@example.com"]
    assert cli("subscribers", "erase", "ana@example.com", "--yes").exit_code == 0
    assert [r.email for r in rows(config)] == ["bo@example.com"]
