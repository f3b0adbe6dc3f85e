"""Which sends the public may read, and the web version of one."""

from __future__ import annotations

from sqlalchemy import Engine

from newsletter.compose import render
from newsletter.config import Config
from newsletter.service.sending import stored_prepared
from newsletter.storage.delivery_log import DeliveryLog, SendRecord
from newsletter.storage.models import SendState

# A send is public once it has started going out; a state added later (a scheduled
# send, say) stays private until it is listed here.
PUBLISHED = (SendState.sending, SendState.paused, SendState.done)


def published(engine: Engine) -> list[SendRecord]:
    """The public sends, newest first."""
    sends = (s for s in DeliveryLog(engine).sends() if s.state in PUBLISHED)
    return sorted(sends, key=lambda s: s.started_at, reverse=True)


def web_version(engine: Engine, slug: str, config: Config) -> str | None:
    """The issue's HTML with no reader's data in it, or None when it is not public."""
    found = DeliveryLog(engine).find(slug)
    if found is None or found.state not in PUBLISHED:
        return None
    prepared = stored_prepared(found, config.newsletter.greeting_fallback)
    return render.public_fill(prepared, config).html
