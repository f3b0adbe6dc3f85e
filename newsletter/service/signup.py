"""Double opt-in: subscribe (pending, a confirmation link), confirm (active, with
the consent record), and one-click unsubscribe. No web code here. `request`,
`confirm_link` and `unsubscribe_link` each own their transaction (the web calls
them); `subscribe`, `confirm` and `unsubscribe` work inside a caller's session."""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from newsletter.links import Links
from newsletter.storage import db, outbox
from newsletter.storage.models import Erased, Status, Subscriber, utcnow
from newsletter.storage.subscribers import clean_name, email_hash, normalize_email
from newsletter.tokens import ConfirmLink, Signer, TokenError

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
    """A confirmation link used before by someone who has left since (unsubscribed
    or bounced): it must not bring them back; the signup form can."""


class LinkGone(TokenError):
    """A confirmation link made before its subscriber's row: they were erased since,
    and the id it names may now be someone else's."""


@dataclass(frozen=True)
class Pending:
    """What a confirmation link would confirm, read without changing anything."""

    email: str
    subscribed: bool  # already active: the button has nothing left to do


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
        _as_costly_as_a_signup(session, subscriber, name, signer)
        return None
    if subscriber is None:
        subscriber = Subscriber(
            email=address, name="", status=Status.pending, source="form", created_at=now,
            bounce_count=0,
        )  # fmt: skip
        session.add(subscriber)
    # The latest signup's details; every unexpired link still confirms, but the typed
    # name is applied only by the link of the signup that typed it (see `confirm`).
    subscriber.pending_name = name
    subscriber.signup_at = now
    subscriber.signup_ip = ip[:64]
    subscriber.consent_text = consent
    subscriber.consent_source = form[:500]
    session.flush()
    return signer.confirm_token(subscriber.id, address, name)


def _as_costly_as_a_signup(
    session: Session, subscriber: Subscriber, name: str, signer: Signer
) -> None:
    """Do for an active address the work a signup does (a row written, a token signed)
    and change nothing: a known address must answer no faster than a new one."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber.id)
        .values(signup_at=Subscriber.signup_at)
    )
    signer.confirm_token(subscriber.id, subscriber.email, name)


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


def look_up(engine: Engine, token: str, *, signer: Signer, max_age_seconds: int) -> Pending:
    """What a confirmation link is for; changes nothing (mail scanners open every
    link). Raises TokenError (TokenExpired, LinkUsed, LinkGone)."""
    with db.session(engine) as session:
        subscriber = _named(session, signer.confirm_of(token, max_age_seconds), signer)
        return Pending(subscriber.email, subscriber.status == Status.active)


def confirm_link(
    engine: Engine, token: str, *, signer: Signer, links: Links, max_age_seconds: int,
    welcome: bool = False,
) -> Joined | None:  # fmt: skip
    """Confirm in its own transaction: who just joined, or None when they already had
    (a link clicked again); a first confirmation puts the welcome mail in the outbox
    when `welcome`. Raises TokenError (TokenExpired, LinkUsed, LinkGone)."""
    with db.session(engine) as session:
        subscriber, joined = confirm(session, token, signer=signer, max_age_seconds=max_age_seconds)
        subscriber_id, address = subscriber.id, subscriber.email
        if not joined:
            return None
        joined_now = Joined(address, links.unsubscribe(subscriber_id, address))
        if welcome:
            values = {
                "archive_url": links.archive(),
                "unsubscribe_url": joined_now.unsubscribe_url,
            }
            outbox.enqueue(session, "welcome", address, subscriber_id, values)
    return joined_now


def unsubscribe_link(engine: Engine, token: str, *, signer: Signer) -> None:
    """One-click unsubscribe in its own transaction; raises TokenError when forged."""
    with db.session(engine) as session:
        unsubscribe(session, token, signer=signer)


def unsubscribe_status(engine: Engine, token: str, *, signer: Signer) -> Status | None:
    """The status of whom a genuine unsubscribe link names (None: nobody, any more);
    changes nothing. Raises TokenError unless the token is an unsubscribe link's."""
    with db.session(engine) as session:
        subscriber = _holder(session, token, signer)
        return None if subscriber is None else subscriber.status


def resubscribe_link(
    engine: Engine, token: str, *, signer: Signer, consent: str, form: str
) -> bool:
    """Undo an unsubscribe from the link that did it; False when that link cannot
    (erased, bounced, never confirmed): the signup form's double opt-in must.

    No new confirmation email: the token is signed for this id and address and
    went out only inside mail delivered to that address, so pressing the button
    proves what a confirmation link proves (a person reading that inbox). A
    bounced address gets no such shortcut: only a fresh email shows it works again."""
    with db.session(engine) as session:
        subscriber = _holder(session, token, signer)
        if subscriber is None or subscriber.status in (Status.pending, Status.bounced):
            return False
        if subscriber.status == Status.unsubscribed:
            now = utcnow()
            subscriber.status = Status.active
            subscriber.unsubscribed_at = None
            subscriber.consent_at = now
            subscriber.consent_text = consent
            subscriber.consent_source = form[:500]
        return True


def confirm(
    session: Session, token: str, *, signer: Signer, max_age_seconds: int
) -> tuple[Subscriber, bool]:
    """Activate whom a valid confirmation link names: (subscriber, whether this
    activated them; False when they already were)."""
    link = signer.confirm_of(token, max_age_seconds)
    subscriber = _named(session, link, signer)
    if subscriber.status == Status.active:
        return subscriber, False  # clicked again: changes nothing
    # Only the link of the signup that typed the pending name applies it: with every
    # link valid, a stranger's signup for this address must not name its reader.
    typed = subscriber.pending_name
    if typed and hmac.compare_digest(link.name, signer.name_digest(typed)):
        subscriber.name = typed
    subscriber.pending_name = None
    now = utcnow()
    subscriber.status = Status.active
    subscriber.confirmed_at = now
    subscriber.consent_at = now
    subscriber.unsubscribed_at = None
    subscriber.bounce_count = 0
    # Opting in again themselves undoes an earlier erasure's import block.
    session.execute(delete(Erased).where(Erased.email_hash == email_hash(subscriber.email)))
    return subscriber, True


def _named(session: Session, link: ConfirmLink, signer: Signer) -> Subscriber:
    """The subscriber a confirmation link may still confirm (or finds active)."""
    subscriber = session.get(Subscriber, link.subscriber_id)
    if (
        subscriber is None
        or not signer.matches(link.address, subscriber.email)
        or _millis(subscriber.created_at) > link.issued
    ):
        raise LinkGone("this confirmation link is for someone erased since")
    # A link works until its subscriber confirms; if they leave after that, an old
    # link must not bring them back. Tokens carry milliseconds: a link made in the
    # millisecond of a confirmation counts as made after it.
    confirmed = subscriber.confirmed_at
    if subscriber.status != Status.active and confirmed and _millis(confirmed) > link.issued:
        raise LinkUsed("this confirmation link was used, and its subscriber left since")
    return subscriber


def _millis(moment: dt.datetime) -> dt.datetime:
    # SQLite hands datetimes back without their zone; they were stored in UTC.
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _holder(session: Session, token: str, signer: Signer) -> Subscriber | None:
    """Whom a genuine unsubscribe link names, if that id still holds that address."""
    subscriber_id, fingerprint = signer.subscriber_of(token)
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or not signer.matches(fingerprint, subscriber.email):
        return None  # erased, or the id now belongs to someone else
    return subscriber


def unsubscribe(session: Session, token: str, *, signer: Signer) -> None:
    """Idempotent: unsubscribing twice, or after being erased, is fine. A bounced
    reader stays bounced: unsubscribed, they could resubscribe with one button and
    skip the fresh email that shows their address works again."""
    subscriber = _holder(session, token, signer)
    if subscriber is not None and subscriber.status in (Status.active, Status.pending):
        subscriber.status = Status.unsubscribed
        subscriber.unsubscribed_at = utcnow()
