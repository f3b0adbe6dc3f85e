"""The send runner's timing and bookkeeping rules, each against a real SMTP server
on loopback: the rate, backoff, retries, idle connections, the failure streak,
readers who leave mid-send, and the bounce limit."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest
from conftest import use_smtp
from sqlalchemy import select

from newsletter.config import load_config
from newsletter.service import runner as runner_module
from newsletter.service import sending as service
from newsletter.service.pacing import Backoff, Pacer
from newsletter.storage import db
from newsletter.storage.delivery_log import DeliveryLog, Result
from newsletter.storage.models import Delivery, DeliveryState, Status, Subscriber

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"


def subscribe(cli, count: int) -> list[str]:
    addresses = [f"r{i:02d}@example.com" for i in range(count)]
    for address in addresses:
        assert cli("subscribers", "add", address).exit_code == 0
    return addresses


def run_send(folder):
    config = load_config(folder / "newsletter.toml", environ={})
    return service.run(service.plan(config, folder / ISSUE))


def test_pacer_spaces_messages_at_the_configured_rate():
    async def times(rate: float) -> list[float]:
        pacer, stamps = Pacer(rate), []
        for _ in range(11):
            await pacer.wait()
            stamps.append(time.monotonic())
        return stamps

    paced = asyncio.run(times(50))
    assert paced[-1] - paced[0] >= 10 / 50 * 0.95  # ten intervals of 20 ms
    unpaced = asyncio.run(times(0))
    assert unpaced[-1] - unpaced[0] < 0.05


def test_a_caller_late_for_its_slot_keeps_it_and_the_rate_holds():
    async def times() -> list[float]:
        pacer, stamps = Pacer(10), []
        for pause in (0.0, 0.15, 0.0, 0.0):  # the second caller comes half a slot late
            await asyncio.sleep(pause)
            await pacer.wait()
            stamps.append(time.monotonic())
        return stamps

    first, late, third, fourth = asyncio.run(times())
    assert late - first < 0.17  # it went at once, in the slot it missed
    assert 0.19 <= third - first < 0.24  # the next slot was not pushed back by the lateness
    assert fourth - first >= 0.3 * 0.95  # four messages: still three intervals at least


def test_a_send_keeps_the_rate_over_several_connections(cli, folder, smtp):
    use_smtp(folder, smtp.port, rate=40, connections=3)
    subscribe(cli, 12)
    started = time.monotonic()
    outcome = run_send(folder)
    assert outcome.report.sent == 12
    assert time.monotonic() - started >= 11 / 40 * 0.95  # the limit is global, not per connection


def test_backoff_doubles_and_a_success_resets_it():
    backoff = Backoff()
    first = backoff.delay()
    backoff.failed()
    second = backoff.delay()
    backoff.failed()
    assert (second, backoff.delay()) == (2 * first, 4 * first)
    backoff.succeeded()
    assert (backoff.streak, backoff.delay()) == (0, first)


def test_retries_wait_longer_each_time(cli, folder, smtp):
    use_smtp(folder, smtp.port, retry_delay=0.1, max_attempts=4, connections=1)
    (address,) = subscribe(cli, 1)
    smtp.handler.script(address, 451, 451, 451, 250)
    assert run_send(folder).report.sent == 1
    at = smtp.handler.rcpt_times[address]
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.09 and gaps[1] >= 1.8 * gaps[0] * 0.9 and gaps[2] >= 1.8 * gaps[1] * 0.9


def test_a_success_resets_the_failure_streak(cli, folder, smtp):
    # Two drops, a success, two drops, a success: three drops in a row never happen,
    # so with pause_after = 3 the send must not pause.
    use_smtp(folder, smtp.port, pause_after=3, connections=1, max_attempts=3)
    addresses = subscribe(cli, 6)
    for address in (addresses[0], addresses[1], addresses[3], addresses[4]):
        smtp.handler.script(address, "drop", 250)
    report = run_send(folder).report
    assert report.paused is None
    assert report.sent == 6


def test_an_idle_connection_is_reopened_not_reused(cli, folder, smtp, monkeypatch):
    use_smtp(folder, smtp.port, rate=5, connections=1)
    subscribe(cli, 3)
    monkeypatch.setattr(runner_module, "IDLE_REOPEN", 0.1)  # the rate leaves 0.2 s between
    assert run_send(folder).report.sent == 3
    assert smtp.handler.sessions == 3


def test_a_busy_connection_is_reused(cli, folder, smtp):
    use_smtp(folder, smtp.port, rate=5, connections=1)
    subscribe(cli, 3)
    assert run_send(folder).report.sent == 3
    assert smtp.handler.sessions == 1


def test_who_unsubscribes_during_a_live_send_is_not_sent_to(cli, folder, smtp):
    use_smtp(folder, smtp.port, rate=8, connections=1)
    addresses = subscribe(cli, 16)
    result: dict = {}
    sender = threading.Thread(target=lambda: result.update(outcome=run_send(folder)))
    sender.start()
    deadline = time.monotonic() + 20
    while not smtp.handler.received:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert cli("subscribers", "remove", addresses[-1]).exit_code == 0  # claimed already
    sender.join(30)
    assert addresses[-1] not in smtp.handler.by_rcpt()
    assert result["outcome"].report.sent == 15
    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:
        state, reply = s.execute(
            select(Delivery.state, Delivery.last_reply).where(Delivery.email == addresses[-1])
        ).one()
    assert state == DeliveryState.skipped and reply.startswith("not sent: unsubscribed")


@pytest.mark.parametrize("limit", [1, 2])
def test_the_bounce_limit_decides_when_a_reader_stops(cli, folder, limit):
    subscribe(cli, 1)
    config = load_config(folder / "newsletter.toml", environ={})
    log = DeliveryLog(db.connect(config), bounce_limit=limit)
    plan = service.plan(config, folder / ISSUE)
    record = log.start(service.new_send(plan))
    (claimed,) = log.claim(record.id, "w", 10, 60)
    statuses = []
    for attempt in range(1, 3):
        bounce = Result(
            claimed.delivery_id, claimed.subscriber_id, DeliveryState.bounced, attempt, "550 no"
        )
        log.record([bounce])
        with db.session(log.engine) as s:
            statuses.append(s.scalar(select(Subscriber.status)))
    expected = [Status.bounced] * 2 if limit == 1 else [Status.active, Status.bounced]
    assert statuses == expected
