"""The fingerprint of the settings that shape a message: stored when a send starts,
so that a worker on another host (or the editor resuming) with other settings is
refused instead of sending readers a second Message-ID and unsubscribe links the
web server rejects.

An HMAC keyed with `[web] secret_key`: the stored value reveals nothing of the
settings, and a different secret alone gives a different fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from newsletter.config import Config
from newsletter.tokens import secret_of

VERSION = 1  # bump when what goes in changes: older fingerprints then differ on purpose


def fingerprint(settings: Config) -> str:
    """64 hex characters; the same for two hosts exactly when their messages would
    carry the same From, Reply-To, Message-IDs, links, DKIM signature and bounce address."""
    shaping = {
        "version": VERSION,
        "from_address": settings.sender.from_address,
        "from_name": settings.sender.from_name,
        "reply_to": settings.sender.reply_to,
        # Links strip a trailing slash: "https://x/" and "https://x" link alike.
        "base_url": settings.newsletter.base_url.rstrip("/"),
        "dkim": _dkim(settings),
        "bounces": settings.bounces.address,
    }
    canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    key = secret_of(settings).encode()
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def _dkim(settings: Config) -> dict[str, str | None] | None:
    dkim = settings.dkim
    if not dkim.key_file:  # no signing: selector and domain change nothing
        return None
    path = Path(dkim.key_file)
    path = path if path.is_absolute() else settings.root / path
    try:
        key = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:  # the send's own check (signing_key) says what is wrong with it
        key = "unreadable"
    return {"selector": dkim.selector, "domain": dkim.domain, "key": key}
