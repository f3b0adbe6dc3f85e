"""Double opt-in: subscribe (pending, a confirmation link), confirm (active, with
the consent record), and one-click unsubscribe. No web code here: the web app
and tests call these with a database session."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.storage.models import Erased, Status, Subscriber, utcnow
from newsletter.storage.subscribers import clean_name, email_hash, normalize_email
from newsletter.tokens import Signer, TokenError

MAX_WEB_NAME = 100


@dataclass(frozen=True)
class Confirmation:
    """A confirmation email to send: to whom, and the token for its link."""

    email: str
    token: str


class LinkUsed(TokenError):
    """A confirmation link that was already used, or replaced by a newer one."""


def subscribe(
    session: Session, email: str, name: str | None, *, ip: str, consent: str, form: str,
    signer: Signer,
    new_link: bool = True,
) -> Confirmation | None:  # fmt: skip
    """Record a signup; returns the confirmation to send, or None when there is
    nothing new to say (the address is already active) or no email may go out now
    (`new_link` False: the links already sent then stay valid)."""
    address = normalize_email(email)
    name = clean_name(name)[:MAX_WEB_NAME]
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == address))
    now = utcnow()
    if not new_link or (subscriber is not None and subscriber.status == Status.active):
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
    return Confirmation(address, signer.confirm_token(subscriber.id, subscriber.confirm_nonce))


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
