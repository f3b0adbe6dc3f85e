"""One send shared by several processes on PostgreSQL: the editor's `newsletter send`
and `newsletter worker`s claim batches with leases, nobody gets the issue twice
(except a message a killed process had on the wire, sent again with the same
Message-ID), a killed participant's deliveries are taken over when its lease runs
out, a stopped worker leaves the send to the others, and Ctrl-C of the editor's
send pauses it for everyone."""

from __future__ import annotations

import json
import signal

import pytest
from conftest import POSTGRES_URL, use_smtp
from processes import check_often, follow, start, start_worker, subscribe, wait_for
from sqlalchemy import select

from newsletter.config import load_config
from newsletter.storage import db
from newsletter.storage.models import Delivery, Send, SendState

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
SLUG = "2026-11-24-survival-of-the-fittest-funnel"

pytestmark = [
    pytest.mark.skipif(
        not POSTGRES_URL,
        reason="a shared send needs PostgreSQL: set NEWSLETTER_TEST_POSTGRES_URL (CI does)",
    ),
    pytest.mark.parametrize("backend", ["postgresql"], indirect=True),
]


@pytest.fixture
def shared(cli, folder, smtp, backend):
    """200 subscribers, a relay each process may use at 40 messages a second, and
    leases of 5 seconds (so a dead participant's deliveries come back quickly)."""
    use_smtp(folder, smtp.port, rate=40, claim_lease=5)
    check_often(folder)
    subscribe(cli, folder, 200)
    return smtp


def deliveries(folder) -> list[Delivery]:
    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:
        return list(s.scalars(select(Delivery)))


def send_state(folder) -> SendState:
    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:
        return s.scalar(select(Send.state))


def everyone_once(smtp, count: int) -> None:
    """Everyone got the issue; whoever got it twice got the same Message-ID twice."""
    by_rcpt = smtp.handler.by_rcpt()
    assert len(by_rcpt) == count
    for copies in by_rcpt.values():
        assert len({c.message["Message-ID"] for c in copies}) == 1


def stop(process, number=signal.SIGTERM) -> tuple[str, str]:
    """Signal the process and return all it printed (with what `follow` saw)."""
    process.send_signal(number)
    try:
        if hasattr(process, "follower"):
            process.wait(20)
            process.follower.join(5)
            return "".join(process.lines), process.stderr.read()
        return process.communicate(timeout=20)
    finally:
        process.kill()


def test_a_worker_joins_the_editors_send_and_they_share_it(folder, shared):
    worker = start_worker(folder)
    try:
        assert worker.stdout.readline() == "worker: sends, outbox\n"
        sender = start(folder, "send", ISSUE, "--yes")
        _, err = sender.communicate(timeout=60)
        assert sender.returncode == 0, err
    finally:
        worker_out, _ = stop(worker)
    # The editor's bar counts the worker's results too: it ends full, not at its own share.
    assert "200/200" in err, err
    everyone_once(shared, 200)
    assert len(shared.handler.received) == 200  # nobody killed: nobody twice
    assert len({d.worker for d in deliveries(folder)}) == 2  # both recorded results
    assert send_state(folder) == SendState.done
    assert f"{SLUG}: helped to send" in worker_out


def test_a_killed_participants_deliveries_are_taken_over_when_its_lease_runs_out(folder, shared):
    sender = start(folder, "send", ISSUE, "--yes")
    try:
        wait_for(lambda: len(shared.handler.received) >= 30, sender)
        sender.kill()  # kill -9: its claims stay, leased for 5 seconds
        sender.wait(5)
        held = [d for d in deliveries(folder) if d.claimed_by]
        assert held  # the dead sender still holds deliveries
        worker = start_worker(folder)
        wait_for(lambda: send_state(folder) == SendState.done, worker, seconds=60)
    finally:
        sender.kill()
    worker_out, _ = stop(worker)
    everyone_once(shared, 200)  # a message on the wire at the kill may come twice, same ID
    assert len(shared.handler.received) <= 200 + 2  # at most one per connection
    assert {d.state.value for d in deliveries(folder)} == {"sent"}
    assert f"{SLUG}: helped to send" in worker_out


def test_ctrl_c_of_the_editors_send_pauses_it_for_the_workers_too(folder, shared):
    worker = start_worker(folder)
    try:
        assert worker.stdout.readline() == "worker: sends, outbox\n"
        sender = start(folder, "send", ISSUE, "--yes")
        wait_for(lambda: len({d.worker for d in deliveries(folder)} - {None}) == 2, sender)
        worker.lines = follow(worker)
        stop(sender, signal.SIGINT)
        assert sender.returncode != 0  # paused, not done
        wait_for(lambda: "paused" in "".join(worker.lines), worker)
    finally:
        worker_out, _ = stop(worker)
    assert send_state(folder) == SendState.paused
    assert "the send was paused elsewhere" in worker_out
    assert 0 < len(shared.handler.received) < 200


def test_a_stopped_worker_leaves_the_send_to_the_others(folder, shared):
    worker = start_worker(folder)
    try:
        assert worker.stdout.readline() == "worker: sends, outbox\n"
        sender = start(folder, "send", ISSUE, "--yes")
        wait_for(lambda: len({d.worker for d in deliveries(folder)} - {None}) == 2, sender)
        worker_out, _ = stop(worker)  # SIGTERM: it finishes what is on the wire and leaves
        assert worker.returncode == 0
        _, err = sender.communicate(timeout=60)
    finally:
        sender.kill()
    assert sender.returncode == 0, err
    assert f"{SLUG}: helped to send" in worker_out and "left to the others" in worker_out
    assert send_state(folder) == SendState.done
    everyone_once(shared, 200)
    assert len(shared.handler.received) == 200


def test_status_json_lists_the_workers_of_a_shared_send(cli, folder, shared):
    worker = start_worker(folder)
    try:
        assert worker.stdout.readline() == "worker: sends, outbox\n"
        assert cli("send", ISSUE, "--yes").exit_code == 0
    finally:
        stop(worker)
    status = json.loads(cli("status", SLUG, "--json").stdout)
    assert status["counts"]["pending"] == 0 and status["counts"]["sent"] == 200
    workers = status["workers"]
    assert len(workers) == 2 and all(w["sent"] > 0 for w in workers)
    assert sum(w["sent"] for w in workers) == 200
    assert all(w["host"] and w["pid"] and w["last_seen"] for w in workers)


def test_two_workers_and_the_send_share_two_relays_through_a_kill_and_a_lost_relay(
    cli, folder, backend
):
    """The work item's whole story: one `send`, two workers, two relays; one worker is
    killed with -9 and one relay stops mid-send; everyone still gets the issue once
    (or twice with the same Message-ID), with nobody doing anything."""
    from smtp_server import SmtpServer

    two = SmtpServer().__enter__()  # stopped mid-send, below
    with SmtpServer() as one:
        use_smtp(folder, one.port, claim_lease=5)
        with (folder / "newsletter.toml").open("a") as f:
            for name, server in (("one", one), ("two", two)):
                f.write(
                    f'\n[[smtp.relays]]\nname = "{name}"\nhost = "127.0.0.1"\n'
                    f'port = {server.port}\nsecurity = "none"\nconnections = 2\nrate = 60\n'
                )
        check_often(folder)
        subscribe(cli, folder, 600)
        workers = [start_worker(folder) for _ in range(2)]
        try:
            for worker in workers:
                assert worker.stdout.readline() == "worker: sends, outbox\n"
            sender = start(folder, "send", ISSUE, "--yes")
            senders = lambda: {d.worker for d in deliveries(folder)} - {None}  # noqa: E731
            wait_for(lambda: len(senders()) == 3, sender, seconds=30)
            workers[0].kill()  # kill -9, with claims in hand
            two.controller.stop()  # the second relay goes away
            _, err = sender.communicate(timeout=120)
            assert sender.returncode == 0, err
        finally:
            for process in (*workers, sender):
                process.kill()
        received = one.handler.by_rcpt()
        for rcpt, copies in two.handler.by_rcpt().items():
            received.setdefault(rcpt, []).extend(copies)
    assert len(received) == 600
    assert all(len({c.message["Message-ID"] for c in copies}) == 1 for copies in received.values())
    status = json.loads(cli("status", SLUG, "--json").stdout)
    assert status["counts"]["pending"] == 0 and status["counts"]["sent"] == 600
    assert len([w for w in status["workers"] if w["sent"] > 0]) == 3
    relays = {r["name"]: r for r in status["relays"]}
    assert relays["one"]["sent"] > 0 and relays["two"]["sent"] > 0
