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
    """One published issue, as the archive, its pages and the feed show it."""

    slug: str
    title: str
    date: dt.date  # the issue's own date (the send's, for sends older than the kept page)
    description: str
    body: str | None  # the kept page's body; None for sends older than it
    record: SendRecord

    @property
    def finished_at(self) -> dt.datetime:
        return self.record.finished_at or self.record.started_at


@dataclass(frozen=True)
class IssuePage:
    entry: Entry
    older: Entry | None
    newer: Entry | None


def published(engine: Engine) -> list[Entry]:
    """The public issues, newest first (by the issue's date, then by when it was sent)."""
    log = DeliveryLog(engine)
    reached = log.sent_counts()
    entries = [_entry(s) for s in log.sends() if s.state in PUBLISHED and reached.get(s.id, 0) > 0]
    return sorted(entries, key=lambda e: (e.date, e.record.started_at), reverse=True)


def issue_page(engine: Engine, slug: str) -> IssuePage | None:
    """A published issue with the issues either side of it, or None when it is not public."""
    entries = published(engine)
    for i, entry in enumerate(entries):
        if entry.slug == slug:
            older = entries[i + 1] if i + 1 < len(entries) else None
            return IssuePage(entry, older, entries[i - 1] if i > 0 else None)
    return None


def email_version(entry: Entry, config: Config) -> str:
    """The email as sent, with no reader's data in it: the page of a send that
    started before the archive kept pages of its own."""
    prepared = stored_prepared(entry.record, config.newsletter.greeting_fallback)
    return render.public_fill(prepared, config).html


def _entry(record: SendRecord) -> Entry:
    body = record.web_html
    return Entry(
        slug=record.slug,
        title=record.title or record.subject,
        date=record.issue_date or record.started_at.date(),
        description=webpage.description_of(body) if body else "",
        body=body,
        record=record,
    )
