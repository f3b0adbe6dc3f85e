"""Trying an issue without sending it to the list: a dry run builds every message
the send would (and sends and records nothing); a test copy goes to one address."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from newsletter.config import Config
from newsletter.mail.message import MessageFactory, Recipient
from newsletter.mail.transport import Reply, TransportError, helo_name, send_one
from newsletter.service.sending import (
    SendPaused,
    checked_issue,
    delivery_log,
    stored_prepared,
)
from newsletter.storage.delivery_log import Claimed
from newsletter.storage.subscribers import normalize_email
from newsletter.tokens import Signer, secret_of


@dataclass(frozen=True)
class DryRun:
    count: int
    size: int
    seconds: float


def dry_run(settings: Config, path: Path) -> DryRun:
    """Build every message the send would, send and record nothing."""
    prepared = checked_issue(settings, path).prepared
    log = delivery_log(settings)
    existing = log.find(prepared.slug)
    if existing and not existing.started:
        existing = None  # a scheduled send is started with the file's version
    if existing:
        prepared = stored_prepared(existing, settings.newsletter.greeting_fallback)
    factory = MessageFactory(prepared, settings, Signer(secret_of(settings)))
    recipients = log.iter_pending(existing.id) if existing else log.active_recipients()
    started = time.perf_counter()
    count = size = 0
    for claimed in recipients:
        size += len(factory.build(_recipient(claimed)))
        count += 1
    return DryRun(count, size, time.perf_counter() - started)


def _recipient(claimed: Claimed) -> Recipient:
    return Recipient(claimed.subscriber_id, claimed.email, claimed.name)


def send_test(settings: Config, path: Path, address: str) -> tuple[str, Reply]:
    """One [TEST] copy of the issue to one address; nothing is recorded."""
    prepared = checked_issue(settings, path).prepared
    to = normalize_email(address, test_address=True)
    factory = MessageFactory(prepared, settings, Signer(secret_of(settings)), test=True)
    recipient = Recipient(0, to, "")
    data, sender = factory.build(recipient), factory.envelope_sender(recipient)
    try:
        helo = helo_name(settings.smtp)
        relay = settings.smtp.relay_list()[0].settings  # one copy: the first relay is enough
        reply = asyncio.run(send_one(relay, helo, sender, to, data))
    except TransportError as exc:
        raise SendPaused(f"test not sent: {exc}; check [smtp] in newsletter.toml") from None
    return to, reply
