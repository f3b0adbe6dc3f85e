"""Transactional emails (confirmation, welcome) on their way to one person."""

from __future__ import annotations

import logging

from newsletter.compose import emails
from newsletter.config import Config

log = logging.getLogger("newsletter.notify")


async def send_email(config: Config, kind: str, to: str, **context: str) -> None:
    """Build and deliver one email of `kind` ("confirm", "welcome"). Failures are
    logged, never raised: whoever asked for it has already had their answer."""
    try:
        data = emails.build(config, kind, to, **context)
        reply = await emails.deliver(config, to, data)
        if not reply.ok:
            log.warning("%s email to %s refused: %s", kind, to, reply)
    except Exception:
        log.exception("%s email to %s failed", kind, to)
