"""Transactional mail (confirmation, welcome): built by the same MIME builder as
issues (so signed alike with DKIM) and sent through the same transport."""

from __future__ import annotations

import logging

from newsletter.compose.emails import prepare_email
from newsletter.config import Config
from newsletter.mail.message import MessageFactory, Recipient
from newsletter.mail.transport import Reply, helo_name, send_one
from newsletter.tokens import Signer, secret_of

log = logging.getLogger("newsletter.notify")


def build_email(config: Config, kind: str, to: str, subscriber_id: int = 0, **values: str) -> bytes:
    """One transactional email; `values` fill its slots (confirm_url, …)."""
    factory = MessageFactory(
        prepare_email(config, kind), config, Signer(secret_of(config)), kind=kind
    )
    return factory.build(Recipient(subscriber_id, to, "", values))


async def deliver_email(config: Config, to: str, data: bytes) -> Reply:
    return await send_one(config.smtp, helo_name(config.smtp), config.sender.from_address, to, data)


async def send_email(config: Config, kind: str, to: str, **values: str) -> None:
    """Build and send; failures are logged, never raised (the caller has answered)."""
    try:
        data = build_email(config, kind, to, **values)
        reply = await deliver_email(config, to, data)
        if not reply.ok:
            log.warning("%s email to %s refused: %s", kind, to, reply)
    except Exception:
        log.exception("%s email to %s failed", kind, to)
