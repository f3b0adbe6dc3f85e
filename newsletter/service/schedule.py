"""Scheduled sends: `send ISSUE --at TIME` stores a checked issue to be sent later,
`--cancel` takes it back, and the worker starts what is due.

Who gets a scheduled issue is decided when it starts, not when it is scheduled:
the snapshot of active subscribers is taken at its time, like any send (people who
join before 08:00 get the 08:00 issue). A send found more than `[schedule]
late_after` past its time is not started on its own: it becomes `late` and waits
for the editor, so a host that was down all weekend does not mail Friday's news on
Monday without a person deciding.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.service import sending
from newsletter.storage.delivery_log import DeliveryLog, SendBusy, SendRecord, exclusive
from newsletter.storage.models import SendState
from newsletter.tokens import secret_of


class ScheduleRefused(NewsletterError):
    """The time is not a time, is past, or the issue cannot be (un)scheduled now."""


@dataclass(frozen=True)
class Scheduled:
    record: SendRecord
    local: dt.datetime  # its time in the newsletter's time zone
    previous: dt.datetime | None  # the time it had before, when it was rescheduled


def parse_time(text: str, zone: dt.tzinfo, zone_name: str) -> dt.datetime:
    """An ISO 8601 time, in UTC; without an offset it means the newsletter's zone."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleRefused(
            f"--at {text!r}: not an ISO 8601 time; write e.g. 2026-12-08T08:00 (meaning "
            f"{zone_name}, [newsletter] timezone) or 2026-12-08T08:00+01:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(dt.UTC)


def local(settings: Config, moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(settings.newsletter.tzinfo)


def shown(settings: Config, moment: dt.datetime) -> str:
    """A time as the editor reads it: in the newsletter's zone, named."""
    return f"{local(settings, moment):%Y-%m-%d %H:%M} {settings.newsletter.timezone}"


def schedule(settings: Config, path: Path, at: str, *, now: dt.datetime | None = None):
    """Check the issue as a send would, then store it to be sent at `at`."""
    secret_of(settings)  # a send at 08:00 must not find out then that links cannot be signed
    when = parse_time(at, settings.newsletter.tzinfo, settings.newsletter.timezone)
    now = now or dt.datetime.now(dt.UTC)
    if when <= now:
        raise ScheduleRefused(
            f"--at {at}: {shown(settings, when)} is in the past (it is {shown(settings, now)}); "
            "give a later time, or send now without --at"
        )
    checked = sending.checked_issue(settings, path, "not scheduled")
    prepared = checked.prepared
    log = sending.delivery_log(settings)
    sending.audience(log, "not scheduled")
    plan = sending.Plan(settings, prepared, checked.source_hash, None, 0, checked.page)
    with exclusive(log.engine, prepared.slug):
        before = log.find(prepared.slug)
        if before is not None and before.started:
            raise ScheduleRefused(
                f"{prepared.slug}: already {before.state.value} since "
                f"{shown(settings, before.started_at)}; a started send cannot be scheduled "
                f"(see 'newsletter status {prepared.slug}')"
            )
        record = log.schedule(sending.new_send(plan), when)
    previous = before.scheduled_at if before and before.state != SendState.cancelled else None
    return Scheduled(record, local(settings, when), previous)


def cancel(settings: Config, slug: str, as_typed: str) -> SendRecord:
    """Take back a scheduled (or late) send; it can be scheduled again later."""
    log = sending.delivery_log(settings)
    with exclusive(log.engine, slug):
        record = log.find(slug)
        if record is None or record.state not in (SendState.scheduled, SendState.late):
            state = "not scheduled" if record is None else f"{record.state.value}, not scheduled"
            raise ScheduleRefused(
                f"{slug}: is {state}; nothing to cancel (schedule it with "
                f"'newsletter send {as_typed} --at TIME')"
            )
        if not log.unschedule(record.id, SendState.cancelled):
            raise ScheduleRefused(f"{slug}: was started meanwhile; see 'newsletter status'")
        return record


def start_due(
    settings: Config,
    *,
    now: dt.datetime | None = None,
    stopped: Callable[[], bool] | None = None,
    on_stopping: Callable[[], None] | None = None,
    log: DeliveryLog | None = None,
) -> list[str]:
    """Start every send whose time has come, one after the other; mark those too far
    past their time `late`. One line per send says what happened."""
    log = log or sending.delivery_log(settings)
    reports = []
    for record in log.waiting():
        now_ = now or dt.datetime.now(dt.UTC)
        if record.state != SendState.scheduled or record.scheduled_at > now_:
            continue
        if stopped and stopped():
            break
        if now_ - record.scheduled_at > settings.schedule.late_after:
            if log.unschedule(record.id, SendState.late):
                reports.append(_late(settings, record, now_))
            continue
        reports.append(_start(settings, record.slug, stopped, on_stopping))
    return reports


def _late(settings: Config, record: SendRecord, now: dt.datetime) -> str:
    hours = (now - record.scheduled_at).total_seconds() / 3600
    return (
        f"{record.slug}: late, not started: it was due {shown(settings, record.scheduled_at)}, "
        f"{hours:.1f} h ago ([schedule] late_after is {settings.schedule.late_after}); "
        f"start it with 'newsletter send {record.slug}' or cancel it with --cancel"
    )


def _start(settings: Config, slug: str, stopped, on_stopping) -> str:
    try:
        plan = sending.plan_stored(settings, slug)
        outcome = sending.run(plan, stopped=stopped, on_stopping=on_stopping)
    except SendBusy:
        return f"{slug}: another process is sending this issue; left to it"
    except sending.NotDue as exc:
        return str(exc)
    counts = {state.value: n for state, n in outcome.counts.items()}
    summary = (
        f"{counts['sent']} sent, {counts['bounced']} bounced, {counts['failed']} failed, "
        f"{counts['skipped']} skipped"
    )
    if outcome.finished:
        return f"{slug}: sent as scheduled: {summary}"
    why = outcome.report.paused or "the worker was stopped"
    return (
        f"{slug}: paused ({why}): {summary}, {counts['pending']} to go; "
        f"resume it with 'newsletter send {slug}'"
    )
