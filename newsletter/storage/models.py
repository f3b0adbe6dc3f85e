"""The tables: subscribers, sends (one per issue sent) and deliveries (one per
send and subscriber). Schema changes go through Alembic (newsletter/storage/migrations)."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class Status(enum.StrEnum):
    pending = "pending"
    active = "active"
    unsubscribed = "unsubscribed"
    bounced = "bounced"


class SendState(enum.StrEnum):
    scheduled = "scheduled"  # waits for its time; the worker starts it
    late = "late"  # found too long past its time: waits for the editor
    cancelled = "cancelled"
    sending = "sending"
    paused = "paused"
    done = "done"


class DeliveryState(enum.StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"
    bounced = "bounced"
    skipped = "skipped"  # unsubscribed or bounced before their turn came


class OutboxState(enum.StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"


def _enum(kind: type[enum.Enum], name: str) -> Enum:
    # Stored as text with a CHECK constraint: readable in any SQL shell, same on SQLite and PG.
    return Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda k: [m.value for m in k],
    )


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Normalized and lower-cased, so uniqueness is case-insensitive.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # Greetings use the first name; imports bring first and last names apart, and
    # any other columns of the export as attributes (a JSON object) templates may use.
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    attributes: Mapped[str | None] = mapped_column(Text)
    status: Mapped[Status] = mapped_column(_enum(Status, "subscriber_status"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    unsubscribed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    bounce_count: Mapped[int] = mapped_column(Integer, default=0)
    # Mailman-style bounce score: hard 1.0, soft 0.5, reset after days without bounces.
    bounce_score: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    last_bounce_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The consent record: when, from where (form URL, IP, file), and the text agreed to.
    consent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    consent_source: Mapped[str | None] = mapped_column(String(500))
    consent_text: Mapped[str | None] = mapped_column(Text)
    # Signup through the form: when, from which IP, and the one confirmation
    # link currently valid (a used or superseded link no longer matches).
    signup_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    signup_ip: Mapped[str | None] = mapped_column(String(64))
    confirm_nonce: Mapped[str | None] = mapped_column(String(64))
    pending_name: Mapped[str | None] = mapped_column(String(200))


class Erased(Base):
    """Someone erased on request: only a hash of the address, so an import cannot add them back."""

    __tablename__ = "erased"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Send(Base):
    __tablename__ = "sends"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    subject: Mapped[str] = mapped_column(String(300))
    # What was sent, with its per-recipient slot markers, so a resumed send
    # sends exactly what the first recipients got.
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    slot_prefix: Mapped[str] = mapped_column(String(40))
    # A hash of the issue file as it was when the send started: a resume notices edits.
    source_hash: Mapped[str | None] = mapped_column(String(64))
    # The issue as the archive shows it (a web page, not the email), kept at send time
    # so that the site does not depend on the issue files being deployed with it.
    title: Mapped[str | None] = mapped_column(String(200))
    issue_date: Mapped[dt.date | None] = mapped_column(Date)
    web_html: Mapped[str | None] = mapped_column(Text)
    # A scheduled send: when it is due (UTC). Starting it is the worker's job.
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # An HMAC of the settings that shape a message (From, links, DKIM, bounces, secret)
    # when the send started: a host with other settings may not join or resume it.
    # None for a send started before it was kept.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[SendState] = mapped_column(_enum(SendState, "send_state"))
    total: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("send_id", "subscriber_id"),
        # The send loop walks one send's pending rows in id order.
        Index("ix_deliveries_send_state_id", "send_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    # Snapshot of the address and name at the start of the send.
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[DeliveryState] = mapped_column(_enum(DeliveryState, "delivery_state"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_reply: Mapped[str | None] = mapped_column(String(500))
    message_id: Mapped[str | None] = mapped_column(String(300))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # A claim: which worker holds this delivery, and until when (epoch seconds). An
    # expired lease returns the delivery to the pool, so a dead worker loses nobody.
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[float | None] = mapped_column(Float)
    # Who recorded the final result, and through which relay: a shared send's status
    # counts per worker and per relay from the log itself.
    worker: Mapped[str | None] = mapped_column(String(100))
    relay: Mapped[str | None] = mapped_column(String(200))


class Worker(Base):
    """A process taking part in sends (`newsletter send` or `newsletter worker`), seen
    alive at `last_seen`: a shared send's status lists them."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    send_id: Mapped[int | None] = mapped_column(Integer, index=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Relay(Base):
    """A relay's health as the senders last saw it: `cooling` until `cool_until`
    (epoch seconds) after it refused connections or kept failing."""

    __tablename__ = "relays"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    cool_until: Mapped[float | None] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Outbox(Base):
    """Transactional mail (confirmation, welcome) waiting for delivery: the web app
    writes here and never waits on SMTP; `serve` and the worker deliver it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(320))
    subscriber_id: Mapped[int | None] = mapped_column(Integer)
    # The message's slot values (confirm_url, …) as a JSON object.
    values: Mapped[str] = mapped_column(Text, default="{}")
    state: Mapped[OutboxState] = mapped_column(_enum(OutboxState, "outbox_state"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_reply: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class BounceEvent(Base):
    """One bounce, complaint or mailed unsubscribe, as read from the bounce mailbox."""

    __tablename__ = "bounce_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    delivery_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # hard, soft, complaint, unsubscribe
    score: Mapped[float] = mapped_column(Float, default=0.0)
    detail: Mapped[str | None] = mapped_column(String(500))  # status code, reporter, …
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RateLimit(Base):
    """One fixed rate-limit window (web signups): shared by every `serve` process and
    kept across restarts. The key is a keyed hash of the limit's key, which names an
    IP or an email address: the table never holds either."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    # Epoch seconds; a row past it counts as empty and is swept away now and then.
    expires_at: Mapped[float] = mapped_column(Float, index=True)
