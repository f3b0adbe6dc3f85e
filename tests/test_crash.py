"""Kill -9 in the middle of a send, then resume: nobody recorded as sent gets it
again, nobody is skipped, and a message resent after the crash (the server took
it, the record was lost) carries the same Message-ID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import use_smtp
from sqlalchemy import func, select

from newsletter.config import load_config
from newsletter.storage import db
from newsletter.storage.models import Delivery, DeliveryState

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
RECIPIENTS = 2000
CONNECTIONS = 4

pytestmark = pytest.mark.usefixtures("backend")


def send_process(folder):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", ISSUE, "--yes"],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_kill_9_mid_send_then_resume(cli, folder, smtp):
    # Slow enough (400/s) that the kill lands mid-send, on 4 connections.
    use_smtp(folder, smtp.port, rate=400, connections=CONNECTIONS)
    (folder / "list.csv").write_text(
        "email,name\n" + "".join(f"r{i}@example.com,Reader {i}\n" for i in range(RECIPIENTS))
    )
    assert cli("subscribers", "import", "list.csv").exit_code == 0

    process = send_process(folder)
    deadline = time.monotonic() + 60
    while len(smtp.handler.received) < 500:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the send did not get going"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    received_at_kill = len(smtp.handler.received)
    assert received_at_kill < RECIPIENTS, "killed too late to test anything"

    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:
        sent_before = s.scalar(select(func.count()).where(Delivery.state == DeliveryState.sent))
    assert 0 < sent_before <= received_at_kill  # recorded only what the server took
    # Each result is committed before its connection sends the next message: at the
    # kill, at most one accepted message per connection is unrecorded.
    assert received_at_kill - sent_before <= CONNECTIONS

    resumed = send_process(folder)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err.decode()
    assert b"Resume" in out

    with db.session(engine) as s:
        states = dict(
            s.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all()
        )
        recorded_ids = dict(s.execute(select(Delivery.email, Delivery.message_id)).all())
    assert states == {DeliveryState.sent: RECIPIENTS}  # everyone exactly once in the log

    by_rcpt = smtp.handler.by_rcpt()
    assert len(by_rcpt) == RECIPIENTS  # nobody skipped
    # Every copy, first or repeated, carries the Message-ID the log recorded for its
    # reader: a copy resent after the crash is the same message.
    assert {
        rcpt: {copy.message["Message-ID"] for copy in copies} for rcpt, copies in by_rcpt.items()
    } == {rcpt: {recorded_ids[rcpt]} for rcpt in by_rcpt}
    twice = [rcpt for rcpt, copies in by_rcpt.items() if len(copies) > 1]
    assert len(twice) <= received_at_kill - sent_before <= CONNECTIONS
