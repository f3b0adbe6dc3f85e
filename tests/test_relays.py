"""Several relays in one send, each a real SMTP server on loopback: messages spread
over them, a relay that refuses connections rests while the others carry on (and
says so in the `relays` table), each relay keeps its own rate, shared among the
workers taking part (test_config_relays.py: the [[smtp.relays]] config)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from conftest import use_smtp
from smtp_server import SmtpServer, free_port
from sqlalchemy import select

from newsletter.config import load_config
from newsletter.mail.message import MessageFactory
from newsletter.service import sending as service
from newsletter.service import watching
from newsletter.service.runner import Runner
from newsletter.storage import db
from newsletter.storage.delivery_log import DeliveryLog
from newsletter.storage.models import Delivery
from newsletter.tokens import Signer, secret_of

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"

pytestmark = pytest.mark.usefixtures("backend")


def use_relays(folder: Path, relays: list[dict], **smtp) -> None:
    """[smtp] with the send-wide settings, then one [[smtp.relays]] table per relay."""
    use_smtp(folder, 1, **smtp)  # [smtp]'s own host and port go unused with relays listed
    tables = ""
    for relay in relays:
        values = {"host": '"127.0.0.1"', **relay}  # the rest from [smtp], as in use_smtp
        tables += "[[smtp.relays]]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
    path = folder / "newsletter.toml"
    path.write_text(path.read_text().replace("[database]", tables + "[database]"))


def subscribe(cli, count: int) -> list[str]:
    addresses = [f"r{i:02d}@example.com" for i in range(count)]
    for address in addresses:
        assert cli("subscribers", "add", address).exit_code == 0
    return addresses


def config_of(folder: Path):
    return load_config(folder / "newsletter.toml", environ={})


def run_send(folder: Path):
    return service.run(service.plan(config_of(folder), folder / ISSUE))


def timed_send(folder: Path):
    """A send's outcome and how long it took, the issue's rendering left out."""
    plan = service.plan(config_of(folder), folder / ISSUE)
    started = time.monotonic()
    outcome = service.run(plan)
    return outcome, time.monotonic() - started


def relay_of(folder: Path) -> dict[str, tuple[str, str | None]]:
    with db.session(db.connect(config_of(folder))) as s:
        rows = s.execute(select(Delivery.email, Delivery.state, Delivery.relay))
        return {email: (state.value, relay) for email, state, relay in rows}


def relay_states(folder: Path):
    return DeliveryLog(db.connect(config_of(folder))).relays()


def test_messages_spread_over_both_relays(cli, folder):
    addresses = subscribe(cli, 20)
    with SmtpServer() as one, SmtpServer() as two:
        use_relays(
            folder,
            [{"name": '"one"', "port": one.port, "rate": 40}, {"port": two.port, "rate": 40}],
        )
        report = run_send(folder).report
        assert report.sent == 20 and report.paused is None
        got_one, got_two = set(one.handler.by_rcpt()), set(two.handler.by_rcpt())
    assert got_one and got_two  # each at 40/s: neither could take all 20 alone in time
    assert got_one | got_two == set(addresses) and not got_one & got_two
    relays = relay_of(folder)
    assert {relays[a] for a in got_one} == {("sent", "one")}
    assert {relays[a] for a in got_two} == {("sent", f"127.0.0.1:{two.port}")}


def test_a_relay_that_refuses_connections_rests_and_the_other_sends_everything(cli, folder):
    addresses = subscribe(cli, 12)
    down = free_port()  # nothing listens here
    with SmtpServer() as up:
        use_relays(
            folder,
            [{"name": '"down"', "port": down}, {"name": '"up"', "port": up.port, "rate": 100}],
            cool_after=2,
            cool_down=30,
            pause_after=10,
        )
        outcome, elapsed = timed_send(folder)
        report = outcome.report
        assert elapsed < 10  # nobody waited for the cool-down to end
        assert sorted(up.handler.by_rcpt()) == addresses
    assert report.sent == 12 and report.paused is None
    assert set(relay_of(folder).values()) == {("sent", "up")}
    state = relay_states(folder)["down"]
    assert state.state == "cooling" and state.cool_until > time.time() + 15
    assert "cannot connect" in state.last_error
    assert "up" not in relay_states(folder)  # a healthy relay writes nothing


def test_a_relay_rested_mid_failure_does_not_pause_the_send(cli, folder):
    # Six connections fail at once; after two the relay rests, and the four failures
    # still under way say nothing new: the send must not count them towards a pause.
    subscribe(cli, 6)
    with SmtpServer() as up:
        use_relays(
            folder,
            [{"name": '"down"', "port": free_port(), "connections": 6}, {"port": up.port}],
            cool_after=2,
            pause_after=4,
        )
        report = run_send(folder).report
    assert report.paused is None and report.sent == 6


def test_a_relay_that_keeps_saying_421_rests_and_its_messages_go_to_the_other(cli, folder):
    addresses = subscribe(cli, 10)
    with SmtpServer() as flaky, SmtpServer() as good:
        for address in addresses:
            flaky.handler.script(address, 421)
        use_relays(
            folder,
            [{"name": '"flaky"', "port": flaky.port}, {"name": '"good"', "port": good.port}],
            cool_after=2,
            pause_after=10,
            max_attempts=5,
        )
        report = run_send(folder).report
        assert sorted(good.handler.by_rcpt()) == addresses
        assert flaky.handler.received == []
    assert report.sent == 10 and report.failed == 0
    assert set(relay_of(folder).values()) == {("sent", "good")}
    state = relay_states(folder)["flaky"]
    assert state.state == "cooling" and "421" in state.last_error


def test_the_send_pauses_only_when_every_relay_fails(cli, folder):
    subscribe(cli, 3)
    use_relays(
        folder,
        [{"name": '"a"', "port": free_port()}, {"name": '"b"', "port": free_port()}],
        cool_after=2,
        pause_after=6,
    )
    report = run_send(folder).report
    assert report.paused and "connection failures in a row on every relay" in report.paused
    assert report.sent == 0
    assert {state for state, _ in relay_of(folder).values()} == {"pending"}
    states = relay_states(folder)
    # One rests; the last one working is never rested, so the send could pause.
    assert [s.state for s in states.values()] == ["cooling"]


def test_a_relay_another_sender_found_down_rests_here_too_and_comes_back(cli, folder):
    addresses = subscribe(cli, 12)
    with SmtpServer() as one, SmtpServer() as two:
        use_relays(
            folder,
            [{"name": '"one"', "port": one.port, "rate": 10}, {"name": '"two"', "port": two.port}],
        )
        log = DeliveryLog(db.connect(config_of(folder)))
        plan = service.plan(config_of(folder), folder / ISSUE)
        log.set_relay("two", "cooling", time.time() + 0.5, "refused, seen elsewhere")
        started = time.monotonic()
        report = service.run(plan).report
        got_two = two.handler.rcpt_times
    assert report.sent == 12
    assert got_two and min(t for ts in got_two.values() for t in ts) >= started + 0.45
    assert set(one.handler.by_rcpt()) | set(two.handler.by_rcpt()) == set(addresses)
    assert log.relays()["two"].state == "ok"  # its first message since wrote it back


def test_each_relay_holds_its_own_rate(cli, folder):
    subscribe(cli, 11)
    with SmtpServer() as server:
        use_relays(folder, [{"port": server.port, "rate": 20, "connections": 3}])
        outcome, elapsed = timed_send(folder)
        assert outcome.report.sent == 11
    assert elapsed >= 10 / 20 * 0.95  # three connections, one relay's rate


def test_two_relays_at_a_rate_each_send_at_the_sum(cli, folder):
    subscribe(cli, 21)
    with SmtpServer() as one, SmtpServer() as two:
        use_relays(folder, [{"port": one.port, "rate": 20}, {"port": two.port, "rate": 20}])
        outcome, elapsed = timed_send(folder)
        assert outcome.report.sent == 21
        counts = [len(one.handler.received), len(two.handler.received)]
        times = [t for s in (one, two) for ts in s.handler.rcpt_times.values() for t in ts]
    assert elapsed >= 9 / 20 * 0.95  # one relay sent at least 10: nine intervals at 20/s
    assert max(times) - min(times) < 20 / 20 * 0.9  # one relay alone needs twenty
    assert min(counts) >= 8


def span(server: SmtpServer) -> float:
    """Seconds from the server's first recipient to its last."""
    times = [t for ts in server.handler.rcpt_times.values() for t in ts]
    return max(times) - min(times)


def started_runner(folder: Path, participants):
    config = config_of(folder)
    log = DeliveryLog(db.connect(config))
    record = log.start(service.new_send(service.plan(config, folder / ISSUE)))
    prepared = service.stored_prepared(record, "there")
    factory = MessageFactory(prepared, config, Signer(secret_of(config)))
    return Runner(log, record.id, factory, config.smtp, participants=participants)


def test_workers_share_a_relays_rate(cli, folder, smtp, monkeypatch):
    monkeypatch.setattr(watching, "WATCH_EVERY", 0.05)
    use_smtp(folder, smtp.port, rate=40, connections=2)
    subscribe(cli, 9)
    asked = []

    def participants() -> int:
        asked.append(time.monotonic())
        return 2  # another worker sends the same send: this one takes half the rate

    runner = started_runner(folder, participants)
    started = time.monotonic()
    assert asyncio.run(runner.run()).sent == 9
    assert time.monotonic() - started >= 8 / 20 * 0.95  # 20/s, not 40/s
    assert len(asked) >= 3  # read at the start, then again while it sent


def test_a_runner_alone_keeps_the_whole_rate(cli, folder, smtp):
    use_smtp(folder, smtp.port, rate=40, connections=2)
    subscribe(cli, 9)
    assert asyncio.run(started_runner(folder, lambda: 1).run()).sent == 9
    assert span(smtp) < 8 / 20 * 0.8


def test_relay_state_is_one_row_per_relay(folder):
    log = DeliveryLog(db.connect(config_of(folder)))
    log.set_relay("mx1", "cooling", 123.5, "x" * 900)
    log.set_relay("mx1", "ok")
    log.set_relay("mx2", "cooling", 10.0, "refused")
    states = log.relays()
    assert sorted(states) == ["mx1", "mx2"]
    assert (states["mx1"].state, states["mx1"].cool_until, states["mx1"].last_error) == (
        "ok",
        None,
        None,
    )
    assert states["mx2"].cool_until == 10.0 and states["mx2"].last_error == "refused"
