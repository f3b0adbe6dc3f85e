"""The rules for mail that comes back: which delivery a bounce or complaint is about,
what it counts, and when a reader stops.

Matching trusts only what a stranger cannot make up: our signed VERP token, the
signed mailto or link token, or the Message-ID we sent (an HMAC of issue and
reader); a bare Final-Recipient address only against the deliveries of that issue
(the returned Message-ID's, else the latest). Where a message carries a token that
is not ours, the bare address is not tried: a forged bounce changes nobody.

Scoring is Mailman's: a permanent failure (5.x.x) scores 1.0, a temporary one
(4.x.x, "delayed") 0.5; scores add up, start again after `reset_after_days`
without bounces, and at `threshold` the subscriber becomes `bounced`. One issue
counts once per reader (a delay notice and then the failure add up to 1.0, not
1.5). A spam complaint or a mailed unsubscribe takes the reader off at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy.orm import Session

from newsletter.config import Config
from newsletter.mail import inbound, mailboxes
from newsletter.mail.inbound import Inbound
from newsletter.storage import bounces as store
from newsletter.storage import db
from newsletter.storage.bounces import Match
from newsletter.storage.models import BounceEvent, Status, Subscriber, utcnow
from newsletter.tokens import Signer, TokenError, secret_of

HARD, SOFT = 1.0, 0.5


def ingest_files(config: Config, paths: list[Path]) -> Iterator[str]:
    """One line per message of these files (each a message or an mbox)."""
    return _process(config, mailboxes.from_files(paths))


def ingest_stdin(config: Config, data: bytes) -> Iterator[str]:
    return _process(config, mailboxes.from_stdin(data))


def fetch(config: Config) -> Iterator[str]:
    """Read the configured mailbox; each message is marked done once its effect is committed."""
    return _process(config, mailboxes.configured(config.bounces, config.root))


def _process(config: Config, items: Iterable[mailboxes.Item]) -> Iterator[str]:
    signer = Signer(secret_of(config))
    engine = db.connect(config)
    try:
        for item in items:
            with db.session(engine) as session:
                line = handle(session, config, signer, item.data)
            item.done()
            yield f"{item.label}: {line}"
    finally:
        engine.dispose()


def handle(session: Session, config: Config, signer: Signer, data: bytes) -> str:
    """What one message was, and what it did: "hard bounce (5.1.1) for x: bounced (…)"."""
    found = inbound.read(data, config.bounces.address)
    what = describe(found)
    if found.kind in ("bounce", "complaint", "unsubscribe"):
        match = _match(session, signer, found)
        if isinstance(match, str):
            return f"{what}: {match}: nobody changed"
        subscriber = store.subscriber(session, match.subscriber_id)
        if subscriber is None:
            return f"{what}: its reader is no longer on the list: nobody changed"
        if found.kind == "bounce":
            did = _bounce(session, config, subscriber, match, found)
        else:
            did = _leave(session, subscriber, match, found)
        return f"{what} for {subscriber.email}: {did}"
    return f"{what}: nobody changed"


def describe(found: Inbound) -> str:
    if found.kind == "bounce":
        return (
            f"{'hard' if found.permanent else 'soft'} bounce ({found.status or 'no status code'})"
        )
    if found.kind in ("complaint", "feedback"):
        name = "spam complaint" if found.kind == "complaint" else "feedback report"
        return f"{name} ({found.feedback_type or 'no type'}, from {found.reporter or 'unknown'})"
    return {
        "unsubscribe": "unsubscribe request by mail",
        "auto-reply": f"auto-reply from {found.sender or 'unknown'}",
        "message": f"not a bounce or complaint (a message from {found.sender or 'unknown'})",
        "junk": "not an email message",
        "empty": "an empty message",
    }[found.kind]


def _match(session: Session, signer: Signer, found: Inbound) -> Match | str:
    """The delivery a message is about, or why none is trusted."""
    forged = False
    for token in found.bounce_tokens:
        try:
            subscriber_id, tag = signer.bounce_of(token)
        except TokenError:
            forged = True
            continue
        for delivery_id, slug in store.issues_of(session, subscriber_id):
            if signer.issue_tag(slug) == tag:
                return Match(subscriber_id, delivery_id)
    for token in found.mailto_tokens:
        match = _mailto_match(session, signer, token)
        forged = forged or match is None
        if match is not None:
            return match
    for token in found.link_tokens:
        match = _link_match(session, signer, token)
        if match is not None:
            return match
    by_id = store.by_message_id(session, found.message_ids)
    if by_id is not None:
        return by_id
    if forged:
        return "its token is not ours"
    if found.bounce_tokens:
        return "its token names no issue we sent"
    if found.kind == "bounce":
        slug = _our_slug(found.message_ids, signer)
        for failure in found.failures:
            by_address = store.by_address(session, failure.address, slug)
            if by_address is not None:
                return by_address
    return "no delivery of ours matches it"


def _mailto_match(session: Session, signer: Signer, token: str) -> Match | None:
    try:
        subscriber_id, signature = signer.mailto_of(token)
    except TokenError:
        return None
    found = store.subscriber(session, subscriber_id)
    if found is None or not signer.mailto_matches(subscriber_id, signature, found.email):
        return None
    return Match(subscriber_id, None)


def _link_match(session: Session, signer: Signer, token: str) -> Match | None:
    try:
        subscriber_id, fingerprint = signer.subscriber_of(token)
    except TokenError:
        return None
    found = store.subscriber(session, subscriber_id)
    if found is None or not signer.matches(fingerprint, found.email):
        return None
    return Match(subscriber_id, None)


def _our_slug(message_ids: list[str], signer: Signer) -> str | None:
    """The issue a returned Message-ID names (`<slug.digest@domain>`), if any."""
    for message_id in message_ids:
        local = message_id.strip("<>").split("@", 1)[0]
        slug, _, digest = local.rpartition(".")
        if slug and len(digest) == 20:
            return slug
    return None


def _bounce(
    session: Session, config: Config, subscriber: Subscriber, match: Match, found: Inbound
) -> str:
    settings = config.bounces
    now = utcnow()
    points = HARD if found.permanent else SOFT
    last = _aware(subscriber.last_bounce_at)
    stale = last is None or now - last > dt.timedelta(days=settings.reset_after_days)
    base = 0.0 if stale else float(subscriber.bounce_score or 0.0)
    before = 0.0 if stale else store.counted_for(session, match.delivery_id)
    added = max(0.0, points - before)
    score = round(base + added, 2)
    reached = score >= settings.threshold
    was = subscriber.status
    detail = f"{found.status or 'no status code'} reported by {found.reporter}"
    event = BounceEvent(
        subscriber_id=subscriber.id,
        delivery_id=match.delivery_id,
        kind="hard" if found.permanent else "soft",
        score=points,
        detail=detail[:500],
        received_at=now,
    )
    store.record_bounce(session, subscriber, event, score, reached)
    if was != Status.active:
        return f"is {was.value} already (score {score:.1f})"
    if reached:
        return f"bounced (score {score:.1f} ≥ {settings.threshold:.1f})"
    counted = "" if added else "already counted for this issue; "
    return f"{counted}score {score:.1f} < {settings.threshold:.1f}, still active"


def _leave(session: Session, subscriber: Subscriber, match: Match, found: Inbound) -> str:
    kind = "complaint" if found.kind == "complaint" else "unsubscribe"
    detail = f"{found.feedback_type} reported by {found.reporter}" if kind == "complaint" else ""
    event = BounceEvent(
        subscriber_id=subscriber.id,
        delivery_id=match.delivery_id,
        kind=kind,
        score=0.0,
        detail=(detail or "by mail")[:500],
        received_at=utcnow(),
    )
    was = subscriber.status
    if store.record_leave(session, subscriber, event):
        return "unsubscribed"
    return f"is {was.value} already"


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value
