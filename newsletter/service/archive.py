"""Which sends the public may read, and the archive's pages of them: each issue's
page as kept when its send started, and its neighbours."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine

from newsletter.compose import render, webpage
from newsletter.config import Config
from newsletter.service.sending import stored_prepared
from newsletter.storage.delivery_log import DeliveryLog, SendRecord
from newsletter.storage.models import SendState

# An issue is public once its send finished and reached somebody: a paused send may
# still be cancelled, and a send nobody got was never published. A state added later
# (a scheduled send, say) stays private until it is listed here.
PUBLISHED = (SendState.done,)


@dataclass(frozen=True)
class Entry:
    """One published issue as a listing shows it."""

    slug: str
    title: str
    date: dt.date  # the issue's own date (the send's, for sends older than the kept page)
    finished_at: dt.datetime
    # Templates copied by an earlier `newsletter init` list issues by these.
    subject: str
    started_at: dt.datetime


@dataclass(frozen=True)
class Kept:
    """One published issue in full, as its page and the feed show it."""

    entry: Entry
    body: str | None  # the kept page's body; None for sends older than it
    description: str
    record: SendRecord


@dataclass(frozen=True)
class IssuePage:
    issue: Kept
    older: Entry | None
    newer: Entry | None


def published(engine: Engine) -> list[Entry]:
    """The public issues, newest first (by the issue's date, then by when it was sent)."""
    public = [s for s in DeliveryLog(engine).summaries() if s.state in PUBLISHED and s.sent > 0]
    public.sort(key=lambda s: (s.issue_date or s.started_at.date(), s.started_at), reverse=True)
    return [
        Entry(
            slug=s.slug,
            title=s.title or s.subject,
            date=s.issue_date or s.started_at.date(),
            finished_at=s.finished_at or s.started_at,
            subject=s.subject,
            started_at=s.started_at,
        )
        for s in public
    ]


def issue_page(engine: Engine, slug: str) -> IssuePage | None:
    """A published issue with the issues either side of it, or None when it is not public."""
    entries = published(engine)
    for i, entry in enumerate(entries):
        if entry.slug == slug:
            older = entries[i + 1] if i + 1 < len(entries) else None
            newer = entries[i - 1] if i > 0 else None
            return IssuePage(in_full(engine, [entry])[0], older, newer)
    return None


def in_full(engine: Engine, entries: list[Entry]) -> list[Kept]:
    log = DeliveryLog(engine)
    kept = []
    for entry in entries:
        record = log.find(entry.slug)
        if record is not None:  # deleted since it was listed
            body = record.web_html
            description = webpage.description_of(body) if body else ""
            kept.append(Kept(entry, body, description, record))
    return kept


def email_version(issue: Kept, config: Config) -> str:
    """The email as sent, with no reader's data in it: the page of a send that
    started before the archive kept pages of its own."""
    prepared = stored_prepared(issue.record, config.newsletter.greeting_fallback)
    return render.public_fill(prepared, config).html
