"""The delivery log's claims, on SQLite and (where one runs) PostgreSQL: a claim
takes exactly what it asks for, nobody else's, and an expired lease frees it."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from newsletter.config import load_config
from newsletter.service import sending
from newsletter.storage import db
from newsletter.storage.delivery_log import DeliveryLog
from newsletter.storage.models import Delivery, DeliveryState

pytestmark = pytest.mark.usefixtures("backend")
ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"


@pytest.fixture
def started(cli, folder):
    (folder / "list.csv").write_text("email\n" + "".join(f"r{i}@example.com\n" for i in range(30)))
    assert cli("subscribers", "import", "list.csv").exit_code == 0
    config = load_config(folder / "newsletter.toml", environ={})
    log = DeliveryLog(db.connect(config))
    return log, log.start(sending.new_send(sending.plan(config, folder / ISSUE)))


def test_a_claim_takes_exactly_what_it_asks_for_in_id_order(started):
    log, record = started
    first = log.claim(record.id, "a", 10, 60)
    second = log.claim(record.id, "b", 10, 60)
    assert len(first) == len(second) == 10
    assert [c.delivery_id for c in first] == sorted(c.delivery_id for c in first)
    assert max(c.delivery_id for c in first) < min(c.delivery_id for c in second)


def test_an_expired_lease_returns_its_deliveries_to_the_pool(started):
    log, record = started
    held = log.claim(record.id, "dead", 25, -1)  # its lease is already over
    again = log.claim(record.id, "alive", 30, 60)
    assert {c.delivery_id for c in held} <= {c.delivery_id for c in again}
    assert len(again) == 30
    assert log.claim(record.id, "third", 30, 60) == []  # all held now
    assert log.release(record.id, "alive") == 30
    assert len(log.claim(record.id, "third", 30, 60)) == 30


def test_what_others_hold_and_which_sends_a_worker_may_join(started):
    from newsletter.storage.result_writer import Result
    from newsletter.storage.workers import WorkerBook

    log, record = started
    book = WorkerBook(log.engine)
    assert book.joinable() == [record.slug]  # nobody holds anything yet
    mine = log.claim(record.id, "me", 10, 60)
    assert book.held_elsewhere(record.id, "me") == 20  # unclaimed ones count too
    log.claim(record.id, "other", 20, 60)
    assert book.held_elsewhere(record.id, "me") == 20
    assert book.held_elsewhere(record.id, "other") == 10
    assert book.joinable() == []  # every delivery is held by someone alive
    log.record(
        [Result(c.delivery_id, c.subscriber_id, DeliveryState.sent, 1, "250", "<m>", "me")
         for c in mine]
    )  # fmt: skip
    assert book.held_elsewhere(record.id, "other") == 0
    with db.session(log.engine) as s:  # the other one's lease runs out
        s.execute(update(Delivery).values(lease_until=-1))
    assert book.joinable() == [record.slug]


def test_workers_are_listed_with_what_each_recorded(started):
    from newsletter.storage.result_writer import Result
    from newsletter.storage.workers import WorkerBook

    log, record = started
    book = WorkerBook(log.engine)
    book.beat("host-a:1", record.id)
    claimed = log.claim(record.id, "host-b:2", 5, 60)
    log.record(
        [Result(c.delivery_id, c.subscriber_id, DeliveryState.sent, 1, "250", "<m>", "host-b:2",
                "relay1") for c in claimed]
    )  # fmt: skip
    seen = {w.id: w for w in book.of_send(record.id)}
    assert set(seen) == {"host-a:1", "host-b:2"}
    assert seen["host-a:1"].sent == 0 and seen["host-a:1"].pid > 0
    assert seen["host-b:2"].sent == 5 and seen["host-b:2"].pid is None  # never beat: no row
    assert book.others_sending(record.id, "host-a:1") == 0  # host-b holds nothing now
    log.claim(record.id, "host-c:3", 5, 60)
    assert book.others_sending(record.id, "host-a:1") == 1  # host-c has claims in hand
    assert book.others_sending(record.id, "host-c:3") == 0
    book.leave("host-a:1")
    assert "host-a:1" not in {w.id for w in book.of_send(record.id)}  # nothing recorded
    assert book.relay_tally(record.id) == {"relay1": (5, 0)}
    assert book.sent_since(record.id, 60) == 5


def test_a_process_not_heard_of_for_a_week_is_forgotten_and_its_tally_kept(started):
    import datetime as dt

    from newsletter.storage.models import Worker, utcnow
    from newsletter.storage.result_writer import Result
    from newsletter.storage.workers import WorkerBook

    log, record = started
    book = WorkerBook(log.engine)
    for worker in ("old:1", "recent:2", "me:3"):
        book.beat(worker, record.id)
    claimed = log.claim(record.id, "old:1", 3, 60)
    log.record(
        [Result(c.delivery_id, c.subscriber_id, DeliveryState.sent, 1, "250", "<m>", "old:1")
         for c in claimed]
    )  # fmt: skip
    now = utcnow()
    with db.session(log.engine) as s:
        s.execute(
            update(Worker).where(Worker.id == "old:1").values(last_seen=now - dt.timedelta(days=8))
        )
        s.execute(
            update(Worker)
            .where(Worker.id == "recent:2")
            .values(last_seen=now - dt.timedelta(days=6))
        )
    book.leave("me:3")
    seen = {w.id: w for w in book.of_send(record.id)}
    assert seen["old:1"].pid is None and seen["old:1"].sent == 3  # row gone, tally kept
    assert seen["recent:2"].pid is not None
