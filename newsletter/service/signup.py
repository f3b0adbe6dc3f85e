"""Double opt-in: subscribe (pending, a confirmation link), confirm (active, with
the consent record), and one-click unsubscribe. No web code here. `request`,
`confirm_link` and `unsubscribe_link` each own their transaction (the web calls
them); `subscribe`, `confirm` and `unsubscribe` work inside a caller's session."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from newsletter.links import Links
from newsletter.storage import db, outbox
from newsletter.storage.models import Erased, Status, Subscriber, utcnow
from newsletter.storage.subscribers import clean_name, email_hash, normalize_email
from newsletter.tokens import Signer, TokenError

MAX_WEB_NAME = 100


@dataclass(frozen=True)
class Confirmation:
    """A confirmation email to send: the token and the link that carries it."""

    token: str
    url: str


@dataclass(frozen=True)
class Joined:
    """Someone who just confirmed: where their welcome goes, and how they can leave."""

    email: str
    unsubscribe_url: str


class LinkUsed(TokenError):
    """A confirmation link that was already used, or replaced by a newer one."""


def subscribe(
    session: Session, email: str, name: str | None, *, ip: str, consent: str, form: str,
    signer: Signer,
    new_link: bool = True,
) -> str | None:  # fmt: skip
    """Record a signup; returns the token for a confirmation link, or None when there is
    nothing new to say (the address is already active) or no email may go out now
    (`new_link` False: the links already sent then stay valid)."""
    address = normalize_email(email)
    name = clean_name(name)[:MAX_WEB_NAME]
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
    now = utcnow()
    if not new_link:
        return None
    if subscriber is not None and subscriber.status == Status.active:
        _as_costly_as_a_signup(session, subscriber, signer)
        return None
    if subscriber is None:
        subscriber = Subscriber(
            email=address, name="", status=Status.pending, source="form", created_at=now,
            bounce_count=0,
        )  # fmt: skip
        session.add(subscriber)
    # All of this describes the signup whose link is now the only valid one; the
    # typed name is applied only when that link is confirmed.
    subscriber.pending_name = name
    subscriber.signup_at = now
    subscriber.signup_ip = ip[:64]
    subscriber.consent_text = consent
    subscriber.consent_source = form[:500]
    subscriber.confirm_nonce = secrets.token_urlsafe(12)
    session.flush()
    return signer.confirm_token(subscriber.id, subscriber.confirm_nonce)


def _as_costly_as_a_signup(session: Session, subscriber: Subscriber, signer: Signer) -> None:
    """Do for an active address the work a signup does (a row written, a token signed)
    and change nothing: a known address must answer no faster than a new one."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber.id)
        .values(confirm_nonce=Subscriber.confirm_nonce)
    )
    signer.confirm_token(subscriber.id, secrets.token_urlsafe(12))


def request(
    engine: Engine, email: str, name: str | None, *, ip: str, consent: str, signer: Signer,
    links: Links, new_link: bool = True,
) -> Confirmation | None:  # fmt: skip
    """A signup from the form, in its own transaction (see `subscribe`), which also
    puts the confirmation mail, carrying its link, in the outbox."""
    address = normalize_email(email)
    with db.session(engine) as session:
        token = subscribe(
            session, address, name, ip=ip, consent=consent, form=f"{links.home()} (signup form)",
            signer=signer, new_link=new_link,
        )  # fmt: skip
        if token is not None:
            confirmation = Confirmation(token, links.confirm(token))
            outbox.enqueue(session, "confirm", address, None, {"confirm_url": confirmation.url})
            return confirmation
        if new_link:  # an active address: as costly as the mail a new one gets
            outbox.touch(session)
    return None


def confirm_link(
    engine: Engine, token: str, *, signer: Signer, links: Links, max_age_seconds: int,
    welcome: bool = False,
) -> Joined:  # fmt: skip
    """Confirm in its own transaction, which also puts the welcome mail in the outbox
    when `welcome`; raises TokenError (TokenExpired, LinkUsed)."""
    with db.session(engine) as session:
        subscriber = confirm(session, token, signer=signer, max_age_seconds=max_age_seconds)
        subscriber_id, address = subscriber.id, subscriber.email
        joined = Joined(address, links.unsubscribe(subscriber_id, address))
        if welcome:
            values = {"archive_url": links.archive(), "unsubscribe_url": joined.unsubscribe_url}
            outbox.enqueue(session, "welcome", address, subscriber_id, values)
    return joined


def unsubscribe_link(engine: Engine, token: str, *, signer: Signer) -> None:
    """One-click unsubscribe in its own transaction; raises TokenError when forged."""
    with db.session(engine) as session:
        unsubscribe(session, token, signer=signer)


def check_unsubscribe(token: str, *, signer: Signer) -> None:
    """Raises TokenError unless the token is a genuine unsubscribe link's."""
    signer.subscriber_of(token)


def confirm(session: Session, token: str, *, signer: Signer, max_age_seconds: int) -> Subscriber:
    """Activate the subscriber a valid, unused confirmation link names."""
    subscriber_id, nonce = signer.confirm_of(token, max_age_seconds)
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.confirm_nonce != nonce:
        raise LinkUsed("this confirmation link was already used, or a newer one replaced it")
    now = utcnow()
    subscriber.status = Status.active
    subscriber.confirmed_at = now
    subscriber.consent_at = now
    subscriber.unsubscribed_at = None
    subscriber.bounce_count = 0
    subscriber.confirm_nonce = None
    if subscriber.pending_name:
        subscriber.name = subscriber.pending_name
    subscriber.pending_name = None
    # Opting in again themselves undoes an earlier erasure's import block.
    session.execute(delete(Erased).where(Erased.email_hash == email_hash(subscriber.email)))
    return subscriber


def unsubscribe(session: Session, token: str, *, signer: Signer) -> None:
    """Idempotent: unsubscribing twice, or after being erased, is fine."""
    subscriber_id, fingerprint = signer.subscriber_of(token)
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or not signer.matches(fingerprint, subscriber.email):
        return  # erased, or the id now belongs to someone else: nothing to do
    if subscriber.status != Status.unsubscribed:
        subscriber.status = Status.unsubscribed
        subscriber.unsubscribed_at = utcnow()
