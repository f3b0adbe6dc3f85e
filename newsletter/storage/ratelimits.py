"""Rate-limit counters in the database, for the `limits` library's fixed-window
strategy: every `newsletter serve` process on one database shares them, and they
outlive a restart.

A hit is one statement, an upsert that starts a fresh window when the old one has
ended and otherwise adds to it, returning the new count: two processes hitting the
same key at once both count, with no read-modify-write in between. The keys name IP
and email addresses, so only a keyed hash of them is stored. Ended windows count as
empty and are swept away at most once a minute per process.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time

from limits.storage import Storage
from sqlalchemy import Engine, bindparam, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from newsletter.storage.models import RateLimit

TABLE = RateLimit.__table__
SWEEP_EVERY = 60.0  # seconds between two sweeps of ended windows, per process
# Keeps these hashes apart from anything else keyed with the same secret.
_DOMAIN = b"newsletter rate limit\0"


class RateLimitStorage(Storage):
    """A `limits` storage for FixedWindowRateLimiter over one SQLAlchemy engine
    (SQLite 3.35+ or PostgreSQL: both have INSERT … ON CONFLICT … RETURNING).

    Database errors pass through as they are (no StorageError wrapping), so a
    refusing database is the same DatabaseUnavailable on this path as on any other."""

    STORAGE_SCHEME = None  # built from an engine the app already has, not from a URI

    def __init__(self, engine: Engine, secret: str, *, sweep_every: float = SWEEP_EVERY):
        super().__init__(wrap_exceptions=False)
        self.engine = engine
        self._secret = secret.encode()
        self._sweep_every = sweep_every
        self._next_sweep = 0.0
        self._sweep_lock = threading.Lock()
        self._postgres = engine.dialect.name == "postgresql"
        self._upsert = _upsert(postgresql.insert if self._postgres else sqlite.insert)

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def hashed(self, key: str) -> str:
        """What the table stores for one of limits' keys (e.g. LIMITER/ip/1.2.3.4/3/1/minute)."""
        return hmac.new(self._secret, _DOMAIN + key.encode(), hashlib.sha256).hexdigest()

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Count `amount` hits on `key`; a window starts at its first hit and lasts
        `expiry` seconds. Returns the count in the window, this hit included."""
        now = time.time()
        values = {"key": self.hashed(key), "amount": amount, "until": now + expiry, "now": now}
        with self.engine.begin() as connection:
            if self._postgres:
                # A hit lost to a server crash (the last fraction of a second) is not
                # worth waiting for the WAL's fsync: a hit takes a fraction of the time.
                connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
            count = connection.execute(self._upsert, values).scalar_one()
        self._sweep(now)
        return count

    def get(self, key: str) -> int:
        return self._current(key, TABLE.c.hits) or 0

    def get_expiry(self, key: str) -> float:
        """When the key's window ends (epoch seconds); now when it has none."""
        expires_at = self._current(key, TABLE.c.expires_at)
        return expires_at if expires_at is not None else time.time()

    def _current(self, key: str, column):
        query = select(column).where(
            TABLE.c.key == self.hashed(key), TABLE.c.expires_at > time.time()
        )
        with self.engine.connect() as connection:
            return connection.execute(query).scalar()

    def clear(self, key: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(TABLE).where(TABLE.c.key == self.hashed(key)))

    def reset(self) -> int | None:
        with self.engine.begin() as connection:
            return connection.execute(delete(TABLE)).rowcount

    def check(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(select(func.count()).select_from(TABLE))
        except SQLAlchemyError:
            return False
        return True

    def sweep(self, now: float | None = None) -> int:
        """Delete the windows that have ended; returns how many. Rows another
        transaction holds are skipped (PostgreSQL), so a sweep never waits on a hit
        and two sweeps never deadlock; they go in a later sweep."""
        now = time.time() if now is None else now
        ended = (
            select(TABLE.c.key).where(TABLE.c.expires_at <= now).with_for_update(skip_locked=True)
        )
        with self.engine.begin() as connection:
            return connection.execute(delete(TABLE).where(TABLE.c.key.in_(ended))).rowcount

    def _sweep(self, now: float) -> None:
        # In a transaction of its own, after the hit's commit: a hit holds one row
        # lock at a time, which no sweep can wait on in a cycle.
        with self._sweep_lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + self._sweep_every
        self.sweep(now)


def _upsert(insert):
    """One hit as one statement: a new window for a new or ended key, else one more
    hit in the current window; returns the count."""
    fresh = insert(TABLE).values(
        key=bindparam("key"), hits=bindparam("amount"), expires_at=bindparam("until")
    )
    ended = TABLE.c.expires_at <= bindparam("now")
    return fresh.on_conflict_do_update(
        index_elements=[TABLE.c.key],
        set_={
            "hits": case((ended, fresh.excluded.hits), else_=TABLE.c.hits + fresh.excluded.hits),
            "expires_at": case((ended, fresh.excluded.expires_at), else_=TABLE.c.expires_at),
        },
    ).returning(TABLE.c.hits)


__all__ = ["RateLimitStorage"]
