"""Bounce events and bounce scores: the lookups that tie a returned message to a
delivery, and the writes that follow (an event, a score, a status). The rules
(what counts, how much, when a reader stops) live in newsletter.service.bounces."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select, true, update
from sqlalchemy.orm import Session

from newsletter.storage.models import (
    BounceEvent,
    Delivery,
    DeliveryState,
    Send,
    SendState,
    Status,
    Subscriber,
    utcnow,
)

RECENT_EVENTS = 5


@dataclass(frozen=True)
class Match:
    subscriber_id: int
    delivery_id: int | None


def subscriber(session: Session, subscriber_id: int) -> Subscriber | None:
    return session.get(Subscriber, subscriber_id)


def issues_of(session: Session, subscriber_id: int) -> list[tuple[int, str]]:
    """(delivery id, issue slug) of each issue sent to a subscriber, newest first."""
    rows = session.execute(
        select(Delivery.id, Send.slug)
        .join(Send, Send.id == Delivery.send_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id.desc())
    )
    return [(row[0], row[1]) for row in rows]


def by_message_id(session: Session, message_ids: list[str]) -> Match | None:
    """The delivery that went out with one of these Message-IDs."""
    if not message_ids:
        return None
    row = session.execute(
        select(Delivery.subscriber_id, Delivery.id).where(Delivery.message_id.in_(message_ids))
    ).first()
    return Match(row[0], row[1]) if row else None


def by_address(session: Session, address: str, slug: str | None = None) -> Match | None:
    """A delivery to `address` that the server accepted, in the issue `slug` (or, without
    one, the latest issue sent): a bare address is trusted only against real deliveries."""
    send_id = session.scalar(
        select(Send.id)
        .where(Send.state.in_([SendState.sending, SendState.paused, SendState.done]))
        .where(Send.slug == slug if slug else true())
        .order_by(Send.started_at.desc(), Send.id.desc())
        .limit(1)
    )
    if send_id is None:
        return None
    row = session.execute(
        select(Delivery.subscriber_id, Delivery.id).where(
            Delivery.send_id == send_id,
            Delivery.email == address.lower(),
            Delivery.state.in_([DeliveryState.sent, DeliveryState.bounced]),
        )
    ).first()
    return Match(row[0], row[1]) if row else None


def counted_for(session: Session, delivery_id: int | None) -> float:
    """The largest score already counted for this delivery (0 when none)."""
    if delivery_id is None:
        return 0.0
    value = session.scalar(
        select(func.max(BounceEvent.score)).where(
            BounceEvent.delivery_id == delivery_id, BounceEvent.kind.in_(["hard", "soft"])
        )
    )
    return float(value or 0.0)


def record_bounce(
    session: Session,
    found: Subscriber,
    event: BounceEvent,
    score: float,
    stop: bool,
) -> None:
    """Store one bounce: its event, the subscriber's new score, and `bounced` if `stop`."""
    now = event.received_at
    session.add(event)
    found.bounce_score = score
    found.last_bounce_at = now
    if event.kind == "hard":
        found.bounce_count = (found.bounce_count or 0) + 1
        if event.delivery_id is not None:
            session.execute(
                update(Delivery)
                .where(Delivery.id == event.delivery_id, Delivery.state == DeliveryState.sent)
                .values(state=DeliveryState.bounced)
            )
    if stop and found.status == Status.active:
        found.status = Status.bounced


def record_leave(session: Session, found: Subscriber, event: BounceEvent) -> bool:
    """A complaint or a mailed unsubscribe: the subscriber leaves at once. True when
    they were on the list until now."""
    session.add(event)
    if found.status not in (Status.active, Status.pending):
        return False
    found.status = Status.unsubscribed
    found.unsubscribed_at = event.received_at or utcnow()
    return True


def recent_events(session: Session, subscriber_id: int, limit: int = RECENT_EVENTS) -> list[dict]:
    """The last bounces, complaints and mailed unsubscribes, newest first."""
    rows = session.scalars(
        select(BounceEvent)
        .where(BounceEvent.subscriber_id == subscriber_id)
        .order_by(BounceEvent.received_at.desc(), BounceEvent.id.desc())
        .limit(limit)
    )
    return [
        {
            "kind": e.kind,
            "score": e.score,
            "detail": e.detail,
            "received_at": _iso(e.received_at),
        }
        for e in rows
    ]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None
