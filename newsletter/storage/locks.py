"""The issue's lock. On SQLite one sender per issue holds it for the whole send: a
second `newsletter send` of the same issue waits for nobody and is refused, since
both would walk the same deliveries. On PostgreSQL it covers only a send's start
(the snapshot); the deliveries are then shared through claims."""

from __future__ import annotations

import fcntl
import hashlib
from contextlib import contextmanager

from sqlalchemy import Engine, text

from newsletter.errors import NewsletterError


class SendBusy(NewsletterError):
    """Another process is sending this issue right now."""


@contextmanager
def exclusive(engine: Engine, slug: str):
    """Hold the issue's lock (a PostgreSQL advisory lock, or a lock file beside the
    SQLite database) for the duration of the block; SendBusy when someone else has it."""
    busy = SendBusy(
        f"{slug}: another 'newsletter send' of this issue is running; let it finish "
        "(or stop it with Ctrl-C), then run this again"
    )
    if engine.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(slug.encode()).digest()[:8], "big") >> 1
        with engine.connect() as conn:
            if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                raise busy
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}-send-{slug}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
