"""What the delivery log hands out: plain records, free of the ORM, so the service
layer above never holds a database object."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from newsletter.storage.models import Send, SendState

# A send in these states has stored bodies and no deliveries yet.
NOT_STARTED = (SendState.scheduled, SendState.late, SendState.cancelled)


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker holds: whom to send to, and how often it was tried."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    attempts: int


@dataclass(frozen=True)
class SendRecord:
    id: int
    slug: str
    subject: str
    state: SendState
    total: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    html: str
    text: str
    slot_prefix: str
    source_hash: str | None
    # The archive's page of the issue; None for sends started before it was kept.
    title: str | None = None
    issue_date: dt.date | None = None
    web_html: str | None = None
    scheduled_at: dt.datetime | None = None  # UTC
    fingerprint: str | None = None  # of the settings it started with; None: started before

    @property
    def started(self) -> bool:
        """Past its snapshot: it has deliveries (a scheduled or cancelled send has none)."""
        return self.state not in NOT_STARTED


@dataclass(frozen=True)
class SendSummary:
    id: int
    slug: str
    subject: str
    title: str | None
    issue_date: dt.date | None
    state: SendState
    started_at: dt.datetime
    finished_at: dt.datetime | None
    sent: int  # deliveries that left


@dataclass(frozen=True)
class NewSend:
    """What a send stores about its issue when it starts."""

    slug: str
    subject: str
    html: str
    text: str
    slot_prefix: str
    source_hash: str
    title: str | None = None
    issue_date: dt.date | None = None
    web_html: str | None = None
    fingerprint: str | None = None  # of the settings of whoever starts it


def record_of(row: Send) -> SendRecord:
    return SendRecord(
        row.id, row.slug, row.subject, row.state, row.total, utc(row.started_at),
        utc(row.finished_at), row.html, row.text, row.slot_prefix, row.source_hash,
        row.title, row.issue_date, row.web_html, utc(row.scheduled_at), row.fingerprint,
    )  # fmt: skip


def utc(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite gives back the naive UTC it stored; PostgreSQL an aware time."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)
