"""The subscriber list as a repository: queries and changes on a session.

Addresses are validated (no DNS lookups) and stored normalized and
lower-cased, so uniqueness is case-insensitive. Nobody who unsubscribed or
bounced is ever re-activated by the editor's tools: only the person can opt
back in, through the signup form. File formats (CSV) live in newsletter.service.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from newsletter.errors import NewsletterError
from newsletter.fields import CONTROL, split_name
from newsletter.storage.models import Delivery, Erased, Outbox, Status, Subscriber, utcnow
from newsletter.storage.records import utc

MAX_NAME = 200
MAX_PART = 100  # a first or last name


class SubscriberError(NewsletterError):
    """An address or name is invalid, or the change is not allowed."""


def normalize_email(raw: str, *, test_address: bool = False) -> str:
    """A valid, normalized, lower-cased address, or SubscriberError saying why not.

    The one rule for every way in (CLI, import, test copies, the signup form):
    surrounding spaces are trimmed; a control character anywhere (CR, LF, NUL,
    a tab...) is refused, never trimmed, since in a header it could start a new one.
    A `test_address` (send --test-to) may also be on a special-use domain such as
    .test, .local or localhost, where test inboxes live; a subscriber's may not."""
    value = raw.strip(" ")
    if CONTROL.search(value):
        raise SubscriberError(
            f"{value!r}: contains a line break or control character; expected name@example.com"
        )
    local, at, domain = value.rpartition("@")
    # Under .test, which email-validator's test_environment allows, any domain is checked
    # for its syntax alone; the suffix comes off again below.
    suffix = ".test" if test_address and at and domain else ""
    try:
        # strict: RFC 5321 limits too (64 characters before the @, 254 in all).
        checked = validate_email(
            f"{local}@{domain}{suffix}" if suffix else value,
            check_deliverability=False,
            allow_smtputf8=False,
            strict=True,
            test_environment=bool(suffix),
        )
    except EmailNotValidError as exc:
        why = str(exc).replace(f"{domain}{suffix}", domain) if suffix else str(exc)
        raise SubscriberError(
            f"{value!r} is not a valid email address ({why}); expected name@example.com"
        ) from None
    # The ASCII form (punycode for international domains) is what SMTP and mail
    # headers carry without the SMTPUTF8 extension.
    address = (checked.ascii_email or checked.normalized).lower()
    return address[: -len(suffix)] if suffix else address


def clean_name(raw: str | None, limit: int = MAX_NAME, what: str = "name") -> str:
    if raw and CONTROL.search(raw):
        # A name reaches the To: header; a line break there could inject headers.
        raise SubscriberError(
            f"{what} {raw!r}: contains a line break or control character; remove it"
        )
    name = " ".join((raw or "").split())
    if len(name) > limit:
        raise SubscriberError(f"{what}: is {len(name)} characters; expected at most {limit}")
    return name


def parse_status(raw: str) -> Status:
    try:
        return Status(raw.strip().lower())
    except ValueError:
        choices = ", ".join(s.value for s in Status)
        raise SubscriberError(f"status {raw!r} is not known; expected one of {choices}") from None


def email_hash(address: str) -> str:
    """What is kept of an erased address: enough to recognise it, not to read it."""
    return hashlib.sha256(address.encode()).hexdigest()


def is_erased(session: Session, address: str) -> bool:
    return session.get(Erased, email_hash(address)) is not None


def erase(session: Session, email: str) -> str:
    """Delete everything held about a person; keep only a hash of the address."""
    address = normalize_email(email)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
    if subscriber is None and not is_erased(session, address):
        raise SubscriberError(f"{address}: is not on the list")
    if subscriber is not None:
        session.execute(delete(Delivery).where(Delivery.subscriber_id == subscriber.id))
        session.delete(subscriber)
    session.execute(delete(Outbox).where(Outbox.email == address))  # mail not yet sent too
    if not is_erased(session, address):
        session.add(Erased(email_hash=email_hash(address)))
    return address


def deliveries_of(session: Session, subscriber_id: int) -> list[dict]:
    """A subscriber's deliveries as plain values, oldest first."""
    rows = session.execute(
        select(Delivery.send_id, Delivery.state, Delivery.attempts, Delivery.sent_at,
               Delivery.message_id, Delivery.last_reply)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id)
    )  # fmt: skip
    return [{key: _plain(value) for key, value in row._mapping.items()} for row in rows]


def find(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email == normalize_email(email)))


def add(
    session: Session,
    email: str,
    name: str | None = None,
    source: str = "cli",
    first_name: str | None = None,
    last_name: str | None = None,
) -> Subscriber:
    """Add an active subscriber the editor vouches for (the consent record says so)."""
    address = normalize_email(email)
    existing = session.scalar(select(Subscriber).where(Subscriber.email == address))
    if existing is None and is_erased(session, address):
        raise SubscriberError(
            f"{address}: was erased on request; only they can sign up again, through the form"
        )
    if existing is not None:
        if existing.status in (Status.unsubscribed, Status.bounced):
            raise SubscriberError(
                f"{address}: is {existing.status.value}; they must opt in again themselves "
                "through the signup form"
            )
        raise SubscriberError(f"{address}: is already on the list ({existing.status.value})")
    now = utcnow()
    first, last = _first_and_last(
        clean_name(name),
        clean_name(first_name, MAX_PART, "first name"),
        clean_name(last_name, MAX_PART, "last name"),
    )
    subscriber = Subscriber(
        email=address,
        name=clean_name(name) or " ".join(p for p in (first, last) if p),
        first_name=first,
        last_name=last,
        status=Status.active,
        source=source,
        created_at=now,
        confirmed_at=now,
        bounce_count=0,
        consent_at=now,
        consent_source=f"added by the editor ({source})",
    )
    session.add(subscriber)
    session.flush()
    return subscriber


def _first_and_last(
    name: str, first: str | None, last: str | None
) -> tuple[str | None, str | None]:
    """The first and last names to store: as given, or split from the full name
    when neither is (see fields.split_name for the rule)."""
    if not first and not last and name:
        first, last = split_name(name)
        first, last = first[:MAX_PART], last[:MAX_PART]
    return first or None, last or None


def remove(session: Session, email: str) -> Subscriber:
    """Unsubscribe: the row stays, so that an import cannot add them back."""
    subscriber = find(session, email)
    if subscriber is None:
        raise SubscriberError(f"{normalize_email(email)}: is not on the list")
    if subscriber.status in (Status.unsubscribed, Status.bounced):
        raise SubscriberError(
            f"{subscriber.email}: is {subscriber.status.value} already; nothing to do"
        )
    subscriber.status = Status.unsubscribed
    subscriber.unsubscribed_at = utcnow()
    return subscriber


def iterate(session: Session, status: Status | None = None) -> Iterator[Subscriber]:
    """Stream subscribers in id order without loading the whole list."""
    query = select(Subscriber).order_by(Subscriber.id).execution_options(yield_per=1000)
    if status is not None:
        query = query.where(Subscriber.status == status)
    yield from session.scalars(query)


def counts(session: Session) -> dict[Status, int]:
    rows = session.execute(
        select(Subscriber.status, func.count()).group_by(Subscriber.status)
    ).all()
    found = dict(rows)
    return {status: found.get(status, 0) for status in Status}


@dataclass(frozen=True)
class Incoming:
    """One person as an import file gives them; None (or empty) where the file is silent."""

    address: str
    name: str = ""
    first_name: str | None = None
    last_name: str | None = None
    status: Status | None = None
    attributes: dict | None = None
    # The dates the other tool kept: signup, double opt-in, consent, leaving.
    signed_up: dt.datetime | None = None
    confirmed: dt.datetime | None = None
    consented: dt.datetime | None = None
    left: dt.datetime | None = None
    consent_source: str | None = None


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_unsubscribed: int = 0
    errors: list[str] = field(default_factory=list)
    # The last file line whose row is committed (0: none yet).
    through_line: int = 0
    # What the file looked like: which tool's export, and what became of its columns.
    source_format: str = ""
    delimiter: str = ","
    kept_columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)

    def absorb(self, other: ImportReport) -> None:
        """Add the counts of a committed chunk."""
        self.added += other.added
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.kept_unsubscribed += other.kept_unsubscribed
        for status, count in other.by_status.items():
            self.by_status[status] = self.by_status.get(status, 0) + count


def import_rows(session: Session, rows: list[Incoming], source: str) -> ImportReport:
    """Merge one chunk of valid rows, distinct addresses; returns its counts.
    Nobody who left, bounced or was erased is re-activated."""
    report = ImportReport()
    now = utcnow()
    addresses = [row.address for row in rows]
    found = session.scalars(select(Subscriber).where(Subscriber.email.in_(addresses)))
    existing = {subscriber.email: subscriber for subscriber in found}
    erased = set(
        session.scalars(
            select(Erased.email_hash).where(Erased.email_hash.in_(map(email_hash, addresses)))
        )
    )
    new = []
    for row in rows:
        current = existing.get(row.address)
        if current is None and email_hash(row.address) in erased:
            report.kept_unsubscribed += 1  # erased on request: never re-added
        elif current is None:
            new.append(_new_row(row, now, source))
        else:
            _merge(current, row, report, now)
    if new:
        session.execute(insert(Subscriber), new)
    for row in new:
        report.by_status[row["status"].value] = report.by_status.get(row["status"].value, 0) + 1
    report.added += len(new)
    session.flush()
    return report


def _new_row(row: Incoming, now: dt.datetime, source: str) -> dict:
    status = row.status or Status.active
    created = row.signed_up or row.consented or row.confirmed or now
    first, last = _first_and_last(row.name, row.first_name, row.last_name)
    return {
        "email": row.address,
        "name": row.name,
        "first_name": first,
        "last_name": last,
        "attributes": dump_attributes(row.attributes),
        "status": status,
        "source": "import",
        "created_at": created,
        "confirmed_at": row.confirmed or (created if status == Status.active else None),
        "unsubscribed_at": (row.left or now) if status == Status.unsubscribed else None,
        "bounce_count": 0,
        "consent_at": row.consented or row.confirmed or created,
        "consent_source": row.consent_source or f"imported by the editor from {source}",
    }


def _merge(current: Subscriber, row: Incoming, report: ImportReport, now) -> None:
    changed = _merge_details(current, row)
    status = row.status
    if status is not None and status != current.status:
        if current.status in (Status.unsubscribed, Status.bounced):
            # Never silently re-activate someone who left or whose mail bounced.
            report.kept_unsubscribed += 1
            return
        current.status = status
        if status == Status.unsubscribed:
            current.unsubscribed_at = row.left or now
        changed = True
    if changed:
        report.updated += 1
    else:
        report.unchanged += 1


def _merge_details(current: Subscriber, row: Incoming) -> bool:
    """Names and attributes the file brings; True when anything changed."""
    changed = False
    for key in ("name", "first_name", "last_name"):
        value = getattr(row, key)
        if value and value != getattr(current, key):
            setattr(current, key, value)
            changed = True
    if row.attributes:
        merged = {**load_attributes(current.attributes), **row.attributes}
        if dump_attributes(merged) != current.attributes:
            current.attributes = dump_attributes(merged)
            changed = True
    return changed


def dump_attributes(attributes: dict | None) -> str | None:
    """Attributes as stored: a JSON object with sorted keys (None when there are none)."""
    if not attributes:
        return None
    return json.dumps(attributes, ensure_ascii=False, sort_keys=True)


def load_attributes(stored: str | None) -> dict:
    if not stored:
        return {}
    try:
        value = json.loads(stored)
    except ValueError:
        return {}  # written by hand in a SQL shell; show it as empty rather than fail a send
    return value if isinstance(value, dict) else {}


def as_record(subscriber: Subscriber) -> dict:
    """Every column of a subscriber as plain values (text, numbers, ISO times)."""
    record = {c.name: _plain(getattr(subscriber, c.key)) for c in Subscriber.__table__.columns}
    record["attributes"] = load_attributes(subscriber.attributes)
    return record


def _plain(value):
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return utc(value).isoformat()  # the same text from SQLite and PostgreSQL
    return value
