"""`newsletter worker` as a separate process, with real signals: it picks up a due
send within seconds, stops on SIGTERM after recording what is in flight and exits
0, and two workers never send anyone twice."""

from __future__ import annotations

import datetime as dt
import signal
import time

import pytest
from conftest import use_smtp
from processes import check_often, start_worker, subscribe, wait_for
from sqlalchemy import func, select

from newsletter.config import load_config
from newsletter.service import worker
from newsletter.storage import db
from newsletter.storage.models import Delivery, DeliveryState, Send, SendState

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
SLUG = "2026-11-24-survival-of-the-fittest-funnel"

pytestmark = pytest.mark.usefixtures("backend")


def soon(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


def counts(folder) -> dict:
    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:
        states = dict(
            s.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all()
        )
        return {"send": s.scalar(select(Send.state)), **states}


def test_a_running_worker_picks_up_a_due_send_and_exits_0_on_sigterm(cli, folder, smtp):
    use_smtp(folder, smtp.port)
    check_often(folder)
    subscribe(cli, folder, 3)
    process = start_worker(folder)
    try:
        assert process.stdout.readline() == "worker: sends, outbox\n"  # up and waiting
        assert cli("send", ISSUE, "--at", soon(1)).exit_code == 0
        scheduled = time.monotonic()
        wait_for(lambda: len(smtp.handler.received) == 3, process)
        assert time.monotonic() - scheduled < 8  # within seconds of its time
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert f"sends: {SLUG}: sent as scheduled: 3 sent" in out
    assert out.splitlines()[-1] == "worker: stopped"
    assert counts(folder) == {"send": SendState.done, DeliveryState.sent: 3}


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_an_idle_worker_stops_at_once(folder, number):
    process = start_worker(folder)
    try:
        assert process.stdout.readline() == "worker: sends, outbox\n"
        stopped = time.monotonic()
        process.send_signal(number)
        out, err = process.communicate(timeout=5)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert time.monotonic() - stopped < 2
    assert "worker: stopped" in out and "Traceback" not in err


def test_sigterm_mid_send_finishes_in_flight_records_them_and_exits_0(cli, folder, smtp):
    use_smtp(folder, smtp.port, rate=100, connections=2)
    check_often(folder)
    subscribe(cli, folder, 600)
    assert cli("send", ISSUE, "--at", soon(0.5)).exit_code == 0
    process = start_worker(folder)
    try:
        wait_for(lambda: len(smtp.handler.received) >= 50, process)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, err
    received = len(smtp.handler.received)
    assert received < 600, "stopped too late to test anything"
    state = counts(folder)
    # Stopped politely: every message the server took is recorded, nothing else is.
    assert state == {
        "send": SendState.paused,
        DeliveryState.sent: received,
        DeliveryState.pending: 600 - received,
    }
    assert f"{SLUG}: paused (the worker was stopped)" in out
    assert f"resume it with 'newsletter send {SLUG}'" in out
    resumed = cli("send", ISSUE, "--yes")
    assert resumed.exit_code == 0, resumed.output
    assert all(len(c) == 1 for c in smtp.handler.by_rcpt().values())
    assert len(smtp.handler.by_rcpt()) == 600


def test_two_workers_never_send_anyone_twice(cli, folder, smtp):
    use_smtp(folder, smtp.port, rate=200, connections=2)
    check_often(folder)
    subscribe(cli, folder, 300)
    workers = [start_worker(folder) for _ in range(2)]
    try:
        assert cli("send", ISSUE, "--at", soon(1)).exit_code == 0
        wait_for(lambda: counts(folder)["send"] == SendState.done, seconds=30)
        time.sleep(0.5)  # a second start, if there were one, would show by now
        for process in workers:
            process.send_signal(signal.SIGTERM)
        outputs = [p.communicate(timeout=10)[0] for p in workers]
    finally:
        for process in workers:
            process.kill()
    assert [p.returncode for p in workers] == [0, 0]
    by_rcpt = smtp.handler.by_rcpt()
    assert len(by_rcpt) == 300 and all(len(c) == 1 for c in by_rcpt.values())
    assert sum("sent as scheduled" in out for out in outputs) == 1


def test_worker_once_exits_1_when_a_duty_fails_and_runs_the_others(cli, folder, smtp):
    use_smtp(folder, smtp.port)
    subscribe(cli, folder, 1)
    seen = []

    def broken(settings):
        raise RuntimeError("mailbox unreachable")

    def fine(settings):
        seen.append(settings.newsletter.name)
        return ["1 thing done"]

    duties = [worker.Duty("broken", lambda s: 60, broken), worker.Duty("fine", lambda s: 60, fine)]
    for duty in duties:
        worker.register(duty)
    try:
        result = cli("worker", "--once")
        for name in ("fine", "sends"):
            with pytest.raises(ValueError, match="registered already"):
                worker.register(worker.Duty(name, lambda s: 1, fine))
    finally:
        for duty in duties:
            worker.unregister(duty.name)
    assert result.exit_code == 1
    assert "broken: error: RuntimeError: mailbox unreachable" in result.output
    assert "fine: 1 thing done" in result.output and seen == ["The Pipeline Weekly"]


def test_worker_help_has_an_example(cli):
    result = cli("worker", "--help")
    assert result.exit_code == 0 and "Example: newsletter worker --once" in result.output
