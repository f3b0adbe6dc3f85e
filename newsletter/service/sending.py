"""Sending an issue: the rules every way of starting a send shares (the CLI today,
a scheduled send in the worker tomorrow). Plan (check the issue, find or size the
send), then run (snapshot, claim, deliver, record, pause, resume).

Readers get one version of an issue: a resumed send sends the bodies stored
when it started, even if the file was edited since (the plan says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from newsletter.compose import preflight, webpage
from newsletter.compose.issue import Issue, IssueError, load_issue
from newsletter.compose.render import PreparedIssue, prepare
from newsletter.compose.slots import SlotTemplate, marker, new_prefix
from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.mail.message import MessageFactory, signing_key
from newsletter.service.fingerprint import fingerprint
from newsletter.service.interrupt import interruptible
from newsletter.service.runner import Report, Runner
from newsletter.storage import db, journal
from newsletter.storage.delivery_log import (
    DeliveryLog,
    NewSend,
    SendRecord,
    exclusive,
)
from newsletter.storage.models import DeliveryState, SendState
from newsletter.storage.workers import WorkerBook
from newsletter.tokens import Signer, secret_of


class SendRefused(NewsletterError):
    """The issue cannot be sent as asked: check errors, nobody to send to, bad options."""


class SettingsDiffer(SendRefused):
    """This host's From, links, DKIM, bounce address or secret are not those the send
    started with: its messages would carry other Message-IDs and unsubscribe links."""


class SendPaused(NewsletterError):
    """The send stopped for a reason the editor must fix; running it again resumes."""


class NotDue(NewsletterError):
    """A scheduled send is no longer waiting: started, cancelled or moved meanwhile."""


@dataclass(frozen=True)
class Plan:
    settings: Config
    prepared: PreparedIssue
    source_hash: str
    existing: SendRecord | None  # a started send (resumed, or retried)
    to_send: int  # deliveries still to go (a resume) or active subscribers (a new send)
    page: webpage.WebPage | None = None  # the archive's page, kept with a send that starts
    scheduled: SendRecord | None = None  # a send waiting for its time, which this one starts
    # "send": the editor's; "scheduled": the worker starts a due send from the stored
    # bodies; "retry": the failed deliveries of a started send go back to the pool.
    mode: str = "send"

    @property
    def slug(self) -> str:
        return self.prepared.slug

    @property
    def done(self) -> bool:
        return (
            self.mode != "retry"
            and self.existing is not None
            and self.existing.state == SendState.done
        )

    @property
    def edited(self) -> bool:
        """The file changed since this send started (the send keeps its first version)."""
        return self.existing is not None and self.existing.source_hash not in (
            None,
            self.source_hash,
        )

    @property
    def already(self) -> int:
        return self.existing.total - self.to_send if self.existing else 0

    @property
    def total(self) -> int:
        return self.existing.total if self.existing else self.to_send


@dataclass(frozen=True)
class Outcome:
    slug: str
    counts: dict[DeliveryState, int]
    report: Report

    @property
    def finished(self) -> bool:
        return not self.report.paused and not self.counts[DeliveryState.pending]


def delivery_log(settings: Config) -> DeliveryLog:
    return DeliveryLog(db.connect(settings), bounce_limit=settings.smtp.bounce_limit)


@dataclass(frozen=True)
class Checked:
    """An issue that passed `check`: rendered for mail and for the archive."""

    issue: Issue
    prepared: PreparedIssue
    source_hash: str  # of the file, so that a resume notices an edit
    page: webpage.WebPage


def checked_issue(settings: Config, path: Path, refused: str = "not sent") -> Checked:
    """The issue rendered, refused when `check` finds errors in it. A template error in
    the archive page stops it too, before anything is sent. A [dkim] key that cannot
    sign is one sentence first (`check` lists it among the rest)."""
    signing_key(settings)
    loaded = load_issue(path)
    prepared = prepare(loaded, settings)
    found = preflight.settings_findings(settings) + preflight.inspect(loaded, prepared, settings)
    errors = [f for f in found if f.level == "error"]
    if errors:
        raise IssueError(
            f"{loaded.path}: {refused}, 'newsletter check' finds {len(errors)} error(s); "
            "fix them first",
            details=[f"{f.where}: {f.message}" for f in errors],
        )
    page = webpage.render_page(loaded, settings)
    return Checked(loaded, prepared, hashlib.sha256(path.read_bytes()).hexdigest(), page)


def plan(settings: Config, path: Path) -> Plan:
    secret_of(settings)  # refuse before any work when links cannot be signed
    checked = checked_issue(settings, path)  # and when mail cannot be (a bad [dkim] key)
    log = delivery_log(settings)
    existing = log.find(checked.prepared.slug)
    if existing and not existing.started:  # scheduled: the editor starts it now
        return Plan(
            settings, checked.prepared, checked.source_hash, None, audience(log),
            checked.page, scheduled=existing,
        )  # fmt: skip
    if existing and existing.state != SendState.done:
        same_settings(existing, settings)  # refused before the editor is asked; _begin again
        log.drop_departed(existing.id)
        to_send = log.counts(existing.id)[DeliveryState.pending]
    elif existing:
        to_send = 0
    else:
        to_send = audience(log)
    return Plan(settings, checked.prepared, checked.source_hash, existing, to_send, checked.page)


def audience(log: DeliveryLog, refused: str = "not sent") -> int:
    """The active subscribers a new send would go to; refused when there are none."""
    count = log.active_count()
    if count == 0:
        raise SendRefused(
            f"{refused}: there are no active subscribers; add some with 'newsletter "
            "subscribers add' or 'import' (or check [database] url)"
        )
    return count


def plan_stored(settings: Config, slug: str) -> Plan:
    """The plan of a scheduled send from what was stored when it was scheduled: the
    worker's host needs no issue files."""
    secret_of(settings)
    signing_key(settings)
    log = delivery_log(settings)
    record = log.find(slug)
    if record is None or record.state != SendState.scheduled:
        raise NotDue(f"{slug}: is not scheduled (any more); see 'newsletter status'")
    prepared = stored_prepared(record, settings.newsletter.greeting_fallback)
    return Plan(
        settings, prepared, record.source_hash or "", None, log.active_count(),
        scheduled=record, mode="scheduled",
    )  # fmt: skip


def plan_retry(settings: Config, slug: str, as_typed: str) -> Plan:
    """Send again to the deliveries of a started send that ended `failed`: the same
    stored bodies, and nobody who was sent, bounced or skipped."""
    secret_of(settings)
    signing_key(settings)
    log = delivery_log(settings)
    record = log.find(slug)
    if record is None or not record.started:
        raise SendRefused(
            f"{slug}: has not been sent, so nothing failed; send it with "
            f"'newsletter send {as_typed}'"
        )
    same_settings(record, settings)
    counts = log.counts(record.id)
    prepared = stored_prepared(record, settings.newsletter.greeting_fallback)
    to_send = counts[DeliveryState.failed] + counts[DeliveryState.pending]
    return Plan(settings, prepared, record.source_hash or "", record, to_send, mode="retry")


def same_settings(record: SendRecord, settings: Config) -> None:
    """Refuse to send more of a started send with other message-shaping settings than
    it started with; a send started before they were kept (None) is taken as it is."""
    if record.fingerprint not in (None, fingerprint(settings)):
        raise SettingsDiffer(
            f"{record.slug}: this host's settings differ from those the send started with "
            "([web] secret_key, [sender], [newsletter] base_url, [dkim] or [bounces] address); "
            "give every host the same newsletter.toml and secrets, then run this again"
        )


def stored_prepared(record: SendRecord, fallback_name: str) -> PreparedIssue:
    """The bodies a send started with, from the delivery log."""
    return PreparedIssue(
        slug=record.slug,
        subject=record.subject,
        html=SlotTemplate.parse(record.html, record.slot_prefix),
        text=SlotTemplate.parse(record.text, record.slot_prefix),
        fallback_name=fallback_name,
    )


def new_send(plan: Plan) -> NewSend:
    prefix = new_prefix()  # stored with the text: the markers are this send's own
    stored = {n: marker(prefix, n) for n in plan.prepared.html.names | plan.prepared.text.names}
    return NewSend(
        slug=plan.slug,
        subject=plan.prepared.subject,
        html=plan.prepared.html.fill(stored),
        text=plan.prepared.text.fill(stored),
        slot_prefix=prefix,
        source_hash=plan.source_hash,
        title=plan.page.title if plan.page else None,
        issue_date=plan.page.date if plan.page else None,
        web_html=plan.page.html if plan.page else None,
        fingerprint=fingerprint(plan.settings),
    )


def run(
    plan: Plan,
    *,
    on_progress: Callable[[int], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
    stopped: Callable[[], bool] | None = None,
    log: DeliveryLog | None = None,
) -> Outcome:
    """Send (or resume) the planned issue. Ctrl-C or SIGTERM: finish the messages in
    flight, record them, and return; a second Ctrl-C raises KeyboardInterrupt.
    `stopped` tells of a stop asked for before the send began listening (the worker's).
    `log` replaces the configured delivery log (tests use it to inject faults).

    On SQLite one process sends an issue at a time (it holds the issue's lock all
    along). On PostgreSQL the lock covers only the start: workers on any host may
    join the send (`join`) and share its deliveries through claims with leases."""
    settings = plan.settings
    log = log or delivery_log(settings)
    if shared(log):
        with exclusive(log.engine, plan.slug):
            record = _begin(log, plan)
            journal.replay(log, record.slug)
        return _drive(settings, log, record, on_progress, on_stopping, stopped, plan.already)
    with exclusive(log.engine, plan.slug):
        record = _begin(log, plan)
        journal.replay(log, record.slug)
        log.release(record.id)  # this process holds the issue's lock: older claims are stale
        return _drive(settings, log, record, on_progress, on_stopping, stopped, plan.already)


def shared(log: DeliveryLog) -> bool:
    """Whether several processes may work on one send: on PostgreSQL."""
    return log.engine.dialect.name == "postgresql"


def join(
    settings: Config,
    slug: str,
    *,
    stopped: Callable[[], bool] | None = None,
    on_stopping: Callable[[], None] | None = None,
) -> Outcome:
    """Take part in a send another process started (PostgreSQL): the stored bodies,
    the deliveries nobody holds, until nobody holds any. Stopping this process leaves
    the send to the others; a pause (by anyone) pauses it for all."""
    log = delivery_log(settings)
    record = log.find(slug)
    if record is None or record.state != SendState.sending or not shared(log):
        raise NotDue(f"{slug}: is not being sent (any more); left as it is")
    signing_key(settings)  # an unreadable [dkim] key says so, not that the settings differ
    same_settings(record, settings)
    journal.replay(log, record.slug)
    return _drive(settings, log, record, None, on_stopping, stopped, joined=True)


def _drive(
    settings: Config,
    log: DeliveryLog,
    record: SendRecord,
    on_progress: Callable[[int], None] | None,
    on_stopping: Callable[[], None] | None,
    stopped: Callable[[], bool] | None,
    already: int = 0,
    joined: bool = False,
) -> Outcome:
    """`already`: the finished deliveries the caller's progress counts from."""
    prepared = stored_prepared(record, settings.newsletter.greeting_fallback)
    factory = MessageFactory(prepared, settings, Signer(secret_of(settings)))
    book = WorkerBook(log.engine)
    together = shared(log)

    def participants() -> int:  # a relay's rate is split between the processes sending
        return 1 + book.others_sending(record.id, runner.worker) if together else 1

    # The editor's send stays until the send is done (a dead helper's claims come
    # back when its lease runs out); a worker that joined leaves when nothing is
    # left to claim, and its next turn looks again.
    runner = Runner(
        log, record.id, factory, settings.smtp, on_progress=on_progress, already=already,
        participants=participants, book=book, shared=together,
        stay=together and not joined, lease=settings.smtp.claim_lease,
    )  # fmt: skip

    async def work(stop: asyncio.Event) -> Report:
        if stopped and stopped():
            stop.set()
        return await runner.run(stop)

    try:
        report = asyncio.run(interruptible(work, on_stopping))
    finally:
        with contextlib.suppress(Exception):  # only the status listing misses it
            book.leave(runner.worker)
    if report.unrecorded:
        journal.save(log.engine, record.slug, runner.unrecorded)
    # A worker that joined changes the send's state only by finishing it: stopped,
    # paused for its own reasons, or out of work, it leaves the send to the others.
    # Nor does a pause learnt from elsewhere get written again (it may be resumed).
    return _close(log, record, report, keep_going=joined or report.elsewhere)


def _begin(log: DeliveryLog, plan: Plan) -> SendRecord:
    """Start or resume the send, holding the issue's lock (so checked again here)."""
    if plan.mode == "scheduled":
        now = log.find(plan.slug)
        if now is None or now.state != SendState.scheduled or now != plan.scheduled:
            raise NotDue(f"{plan.slug}: no longer scheduled as planned; left as it is")
    else:
        now = log.find(plan.slug)
        if now is not None and now.started:  # a resume: checked again, under the lock
            same_settings(now, plan.settings)
    if plan.mode == "retry" and plan.existing:
        log.retry_failed(plan.existing.id)
    return log.start(new_send(plan))


def _close(
    log: DeliveryLog, record: SendRecord, report: Report, keep_going: bool = False
) -> Outcome:
    try:
        log.drop_departed(record.id)
        counts = log.counts(record.id)
        finished = not report.paused and not counts[DeliveryState.pending]
        if finished or not keep_going:
            log.finish(record.id, SendState.done if finished else SendState.paused)
    except Exception as exc:  # the log is down: say so, keep the report
        if not report.paused:
            report.paused = f"cannot read the delivery log ({exc.__class__.__name__})"
        counts = {state: 0 for state in DeliveryState}
        counts[DeliveryState.pending] = -1
    return Outcome(record.slug, counts, report)
