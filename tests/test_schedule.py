"""Scheduled sends, late ones, `--retry-failed` and `skipped`, through the CLI in a
real folder, real SQLite and a real SMTP server on loopback. The worker runs here
with `--once`; tests/test_worker.py runs it as a process and signals it."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from conftest import use_smtp
from sqlalchemy import select, update

from newsletter.config import ConfigError, load_config
from newsletter.storage import db
from newsletter.storage.delivery_log import exclusive
from newsletter.storage.models import Delivery, Send, SendState

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
SLUG = "2026-11-24-survival-of-the-fittest-funnel"
READERS = ["ana@example.com", "bo@example.com", "cy@example.com"]

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def readers(cli, folder, smtp):
    use_smtp(folder, smtp.port)
    for address in READERS:
        assert cli("subscribers", "add", address).exit_code == 0
    return smtp


def engine(folder):
    return db.connect(load_config(folder / "newsletter.toml", environ={}))


def send_row(folder) -> Send:
    with db.session(engine(folder)) as s:
        row = s.scalar(select(Send).where(Send.slug == SLUG))
        s.expunge(row)
        return row


def move_time(folder, delta: dt.timedelta) -> None:
    """Time passes: the scheduled send's time moves `delta` earlier."""
    row = send_row(folder)
    with db.session(engine(folder)) as s:
        s.execute(
            update(Send).where(Send.id == row.id).values(scheduled_at=row.scheduled_at - delta)
        )


def set_zone(folder, zone: str) -> None:
    path = folder / "newsletter.toml"
    path.write_text(
        path.read_text().replace("[newsletter]\n", f'[newsletter]\ntimezone = "{zone}"\n')
    )


def soon(seconds: float = 1.0) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


def test_a_scheduled_send_goes_out_when_due_and_not_before(cli, folder, readers):
    result = cli("send", ISSUE, "--at", soon(1.5))
    assert result.exit_code == 0, result.output
    assert f"{SLUG}: scheduled for " in result.output
    assert readers.handler.received == []  # scheduling sends nothing
    early = cli("worker", "--once")
    assert early.exit_code == 0, early.output
    assert readers.handler.received == []  # not before its time
    assert "scheduled" in cli("status").output
    time.sleep(1.6)
    due = cli("worker", "--once")
    assert due.exit_code == 0, due.output
    assert f"sends: {SLUG}: sent as scheduled: 3 sent, 0 bounced, 0 failed" in due.output
    assert sorted(readers.handler.by_rcpt()) == READERS
    assert cli("worker", "--once").exit_code == 0  # nothing due any more
    assert len(readers.handler.received) == 3
    assert cli("status", SLUG).output.startswith(f"{SLUG}: done")


def test_the_time_means_the_newsletter_time_zone_and_status_shows_it(cli, folder, readers):
    set_zone(folder, "America/New_York")
    assert cli("send", ISSUE, "--at", "2099-12-08T08:00").exit_code == 0
    assert send_row(folder).scheduled_at.replace(tzinfo=None) == dt.datetime(2099, 12, 8, 13, 0)
    listed = cli("status").output
    assert f"{SLUG}  scheduled" in listed
    assert "due 2099-12-08 08:00 America/New_York" in listed
    assert "due 2099-12-08 08:00 America/New_York" in cli("status", SLUG).output
    # An offset is honoured as written; rescheduling says what it moves from.
    moved = cli("send", ISSUE, "--at", "2099-12-08T08:00+01:00")
    assert "scheduled for 2099-12-08 02:00 America/New_York" in moved.output
    assert "(was 2099-12-08 08:00 America/New_York)" in moved.output


def test_the_snapshot_is_taken_when_the_send_starts(cli, folder, readers):
    assert cli("send", ISSUE, "--at", soon(60)).exit_code == 0
    cli("subscribers", "add", "joined@example.com")
    cli("subscribers", "remove", "bo@example.com")
    move_time(folder, dt.timedelta(minutes=2))
    assert cli("worker", "--once").exit_code == 0
    assert sorted(readers.handler.by_rcpt()) == [
        "ana@example.com", "cy@example.com", "joined@example.com",
    ]  # fmt: skip


def test_cancel_unschedules_and_it_can_be_scheduled_again(cli, folder, readers):
    assert cli("send", ISSUE, "--at", soon(60)).exit_code == 0
    cancelled = cli("send", SLUG, "--cancel")
    assert cancelled.exit_code == 0, cancelled.output
    assert f"{SLUG}: cancelled (was due " in cancelled.output
    move_time(folder, dt.timedelta(minutes=2))
    assert cli("worker", "--once").exit_code == 0
    assert readers.handler.received == []
    assert f"{SLUG}  cancelled" in cli("status").output
    again = cli("send", SLUG, "--cancel")
    assert again.exit_code == 1
    assert f"error: {SLUG}: is cancelled, not scheduled; nothing to cancel" in again.stderr
    assert cli("send", ISSUE, "--at", soon(60)).exit_code == 0
    assert send_row(folder).state == SendState.scheduled


def test_an_issue_with_todos_cannot_be_scheduled(cli, folder, readers):
    path = folder / ISSUE
    path.write_text(path.read_text().replace("## The Quote Darwin", "## TODO The Quote Darwin"))
    result = cli("send", ISSUE, "--at", soon(60))
    assert result.exit_code == 1
    assert "not scheduled, 'newsletter check' finds 1 error(s); fix them first" in result.stderr
    assert "TODO" in result.stderr  # the reasons, not just a count
    assert "Traceback" not in result.output
    assert "Nothing sent yet." in cli("status").output


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("2001-01-01T08:00", "is in the past (it is "),
        ("next tuesday", "not an ISO 8601 time; write e.g. 2026-12-08T08:00 (meaning UTC"),
    ],
)
def test_a_past_or_unreadable_time_is_refused(cli, folder, readers, at, message):
    result = cli("send", ISSUE, "--at", at)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0]  # one sentence (the demo's warnings aside)
    assert "Nothing sent yet." in cli("status").output


def test_a_started_send_cannot_be_scheduled(cli, folder, readers):
    assert cli("send", ISSUE, "--yes").exit_code == 0
    result = cli("send", ISSUE, "--at", soon(60))
    assert result.exit_code == 1
    assert f"{SLUG}: already done since " in result.stderr
    assert "a started send cannot be scheduled" in result.stderr


def test_scheduling_and_sending_options_do_not_mix(cli, folder, readers):
    result = cli("send", ISSUE, "--at", soon(60), "--retry-failed")
    assert result.exit_code == 1
    assert result.stderr == "error: --at and --retry-failed: choose one\n"


def test_a_late_send_waits_for_the_editor(cli, folder, readers):
    assert cli("send", ISSUE, "--at", soon(60)).exit_code == 0
    move_time(folder, dt.timedelta(hours=7))  # the host was down; late_after is 6h
    assert "(overdue: is a worker running?)" in cli("status").output
    result = cli("worker", "--once")
    assert result.exit_code == 0
    assert f"{SLUG}: late, not started: it was due " in result.output
    assert readers.handler.received == []
    assert send_row(folder).state == SendState.late
    assert cli("worker", "--once").output.count("late") == 0  # said once
    listed = cli("status").output
    assert f"{SLUG}  late" in listed and f"start it with 'newsletter send {SLUG}'" in listed
    started = cli("send", ISSUE, "--yes")
    assert started.exit_code == 0, started.output
    assert "to 3 active subscriber(s) now instead of as late" in started.output
    assert sorted(readers.handler.by_rcpt()) == READERS


def test_late_after_comes_from_the_config(cli, folder, readers):
    with (folder / "newsletter.toml").open("a") as f:
        f.write('\n[schedule]\nlate_after = "30m"\n')
    assert cli("send", ISSUE, "--at", soon(60)).exit_code == 0
    move_time(folder, dt.timedelta(minutes=45))
    assert "late, not started" in cli("worker", "--once").output
    assert readers.handler.received == []


def test_a_send_already_locked_is_left_to_its_sender(cli, folder, readers):
    assert cli("send", ISSUE, "--at", soon(60)).exit_code == 0
    move_time(folder, dt.timedelta(minutes=2))
    with exclusive(engine(folder), SLUG):  # a manual send of it is running
        result = cli("worker", "--once")
    assert result.exit_code == 0
    assert f"{SLUG}: another process is sending this issue; left to it" in result.output
    assert readers.handler.received == []
    assert send_row(folder).state == SendState.scheduled
    assert cli("worker", "--once").exit_code == 0  # the next turn starts it
    assert sorted(readers.handler.by_rcpt()) == READERS


def test_a_manual_send_of_a_scheduled_issue_starts_it_once(cli, folder, readers):
    assert cli("send", ISSUE, "--at", soon(60)).exit_code == 0
    assert cli("send", ISSUE, "--yes").exit_code == 0
    move_time(folder, dt.timedelta(minutes=2))
    assert cli("worker", "--once").exit_code == 0
    assert sorted(readers.handler.by_rcpt()) == READERS
    assert len(readers.handler.received) == 3


def test_retry_failed_sends_to_the_failed_and_nobody_else(cli, folder, readers):
    use_smtp(folder, readers.port, max_attempts=1)
    cli("subscribers", "add", "dee@example.com")
    cli("subscribers", "add", "eve@example.com")
    readers.handler.script("ana@example.com", 451)
    readers.handler.script("bo@example.com", 451)
    readers.handler.script("cy@example.com", 550)
    first = cli("send", ISSUE, "--yes")
    assert "Done: 2 sent, 1 bounced, 2 failed." in first.output, first.output
    status = cli("status", SLUG).output
    assert "failed   2" in status and "bounced  1" in status and "skipped  0" in status
    assert "ana@example.com  failed  after 1 attempt(s): 451" in status

    readers.handler.rcpt_replies.clear()  # the server accepts again
    cli("subscribers", "add", "new@example.com")  # joined since: not part of this issue
    retried = cli("send", ISSUE, "--retry-failed", "--yes")
    assert retried.exit_code == 0, retried.output
    assert "again to the 2 failed deliver(ies) of 5" in retried.output
    assert "Done: 4 sent, 1 bounced, 0 failed." in retried.output
    copies = {rcpt: len(c) for rcpt, c in readers.handler.by_rcpt().items()}
    assert copies == {a: 1 for a in ["ana@", "bo@", "dee@", "eve@"] for a in [a + "example.com"]}
    again = cli("send", ISSUE, "--retry-failed", "--yes")
    assert again.exit_code == 0 and "no failed deliveries to send again" in again.output
    assert len(readers.handler.received) == 4


def test_retry_failed_skips_who_left_and_status_keeps_them_apart(cli, folder, readers):
    use_smtp(folder, readers.port, max_attempts=1)
    readers.handler.script("ana@example.com", 451)
    readers.handler.script("bo@example.com", 451)
    assert "2 failed" in cli("send", ISSUE, "--yes").output
    cli("subscribers", "remove", "bo@example.com")
    readers.handler.rcpt_replies.clear()
    retried = cli("send", SLUG, "--retry-failed", "--yes")
    assert "Done: 2 sent, 0 bounced, 0 failed, 1 skipped" in retried.output, retried.output
    assert "bo@example.com" not in readers.handler.by_rcpt()
    status = cli("status", SLUG).output
    assert "failed   0" in status and "skipped  1" in status
    assert "bo@example.com  skipped  after 1 attempt(s): not sent: unsubscribed" in status


def test_retry_failed_of_an_unsent_issue_is_refused(cli, folder, readers):
    result = cli("send", ISSUE, "--retry-failed", "--yes")
    assert result.exit_code == 1
    assert f"error: {SLUG}: has not been sent, so nothing failed" in result.stderr


def test_max_attempts_counts_the_tries_of_this_run(cli, folder, readers):
    # A delivery tried 5 times in earlier runs still gets max_attempts tries now.
    assert cli("send", ISSUE, "--yes").exit_code == 0
    with db.session(engine(folder)) as s:
        s.execute(
            update(Delivery)
            .where(Delivery.email == "bo@example.com")
            .values(state="pending", attempts=5)
        )
        s.execute(update(Send).values(state="paused"))
    readers.handler.script("bo@example.com", 451, 451, 250)
    result = cli("send", ISSUE, "--yes")
    assert "Done: 3 sent, 0 bounced, 0 failed." in result.output, result.output
    with db.session(engine(folder)) as s:
        attempts = s.scalar(select(Delivery.attempts).where(Delivery.email == "bo@example.com"))
    assert attempts == 8  # the log still counts every attempt ever made


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('[newsletter]\ntimezone = "Europe/Berln"', "'Europe/Berln' is not an IANA time zone"),
        ('[schedule]\nlate_after = "6 hours"', "'6 hours' is not a duration; expected e.g. 30m"),
    ],
)
def test_a_bad_zone_or_duration_is_one_line_naming_the_fix(folder, line, message):
    path = folder / "newsletter.toml"
    section = line.split("\n")[0]
    text = path.read_text()
    if section in text:
        text = text.replace(section + "\n", line + "\n")
    else:
        text += "\n" + line + "\n"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert message in str(caught.value) and "newsletter.toml:" in str(caught.value)


@pytest.mark.parametrize("meanwhile", [("--cancel",), ("--yes",), ("--at", "2099-01-01T08:00")])
def test_a_worker_leaves_a_send_changed_between_its_look_and_its_lock(
    cli, folder, readers, meanwhile
):
    from newsletter.service import sending

    assert cli("send", ISSUE, "--at", soon(60)).exit_code == 0
    move_time(folder, dt.timedelta(minutes=2))
    plan = sending.plan_stored(load_config(folder / "newsletter.toml", environ={}), SLUG)
    assert cli("send", ISSUE, *meanwhile).exit_code == 0  # cancelled, sent, or moved
    before = len(readers.handler.received)
    with pytest.raises(sending.NotDue, match="no longer scheduled as planned"):
        sending.run(plan)
    assert len(readers.handler.received) == before
