"""Transactional mail (confirmation, welcome): built by the same MIME builder as
issues (so signed alike with DKIM) and sent through the same transport, from the
outbox (service/outbox.py)."""

from __future__ import annotations

from newsletter.compose.emails import prepare_email
from newsletter.config import Config
from newsletter.mail.message import MessageFactory, Recipient
from newsletter.mail.transport import helo_name
from newsletter.tokens import Signer, secret_of


def build_email(config: Config, kind: str, to: str, subscriber_id: int = 0, **values: str) -> bytes:
    """One transactional email; `values` fill its slots (confirm_url, …)."""
    factory = MessageFactory(
        prepare_email(config, kind), config, Signer(secret_of(config)), kind=kind
    )
    return factory.build(Recipient(subscriber_id, to, "", values))


def envelope(config: Config) -> tuple[str, str]:
    """The HELO name and the envelope sender (MAIL FROM) of transactional mail: the
    bounce mailbox when there is one, so that its bounces are read too."""
    return helo_name(config.smtp), config.bounces.address or config.sender.from_address
