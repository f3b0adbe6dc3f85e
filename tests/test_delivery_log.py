"""The delivery log's claims, on SQLite and (where one runs) PostgreSQL: a claim
takes exactly what it asks for, nobody else's, and an expired lease frees it."""

from __future__ import annotations

import time

import pytest

from newsletter.config import load_config
from newsletter.service import sending
from newsletter.storage import db
from newsletter.storage.delivery_log import DeliveryLog

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
    first = log.claim(record.id, "a", 10, time.time() + 60)
    second = log.claim(record.id, "b", 10, time.time() + 60)
    assert len(first) == len(second) == 10
    assert [c.delivery_id for c in first] == sorted(c.delivery_id for c in first)
    assert max(c.delivery_id for c in first) < min(c.delivery_id for c in second)


def test_an_expired_lease_returns_its_deliveries_to_the_pool(started):
    log, record = started
    held = log.claim(record.id, "dead", 25, time.time() - 1)  # its lease is already over
    again = log.claim(record.id, "alive", 30, time.time() + 60)
    assert {c.delivery_id for c in held} <= {c.delivery_id for c in again}
    assert len(again) == 30
    assert log.claim(record.id, "third", 30, time.time() + 60) == []  # all held now
    assert log.release(record.id, "alive") == 30
    assert len(log.claim(record.id, "third", 30, time.time() + 60)) == 30
