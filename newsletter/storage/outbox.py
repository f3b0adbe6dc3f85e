"""The outbox: transactional mail (confirmation, welcome) waiting for delivery.

The web app writes a row in the same transaction as the signup it answers, and
never waits on SMTP; whoever delivers (`serve`'s background thread, a worker)
claims due rows, sends them, and records each result here. A claim moves the
row's `next_attempt_at` a lease into the future in the claiming transaction, so
nobody else claims it while it is being sent: on SQLite the single writer makes
that safe, on PostgreSQL the claim also skips rows another claim has locked.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from newsletter.storage import db
from newsletter.storage.models import Outbox, OutboxState, utcnow

__all__ = ["Item", "OutboxLog", "enqueue", "touch"]


@dataclass(frozen=True)
class Item:
    """A claimed message: what to build, for whom, and how often it was tried."""

    id: int
    kind: str
    email: str
    subscriber_id: int | None
    values: dict[str, str]
    attempts: int
    created_at: dt.datetime


def enqueue(
    target: Session | Engine, kind: str, email: str, subscriber_id: int | None,
    values: dict[str, str],
) -> None:  # fmt: skip
    """A message to deliver as soon as possible: in the caller's transaction when given
    a session, in one of its own when given an engine."""
    now = utcnow()
    statement = insert(Outbox).values(
        kind=kind, email=email, subscriber_id=subscriber_id, values=json.dumps(values),
        state=OutboxState.pending, attempts=0, next_attempt_at=now, created_at=now,
    )  # fmt: skip
    if isinstance(target, Session):
        target.execute(statement)
        return
    with db.session(target) as session:
        session.execute(statement)


def touch(session: Session) -> None:
    """Rewrite the newest row as it is, indexed columns included: a write that costs
    what `enqueue` costs and changes nothing (a signup that sends no mail must not
    answer sooner than one that does)."""
    newest = select(func.max(Outbox.id)).scalar_subquery()
    session.execute(
        update(Outbox)
        .where(Outbox.id == newest)
        .values(state=Outbox.state, next_attempt_at=Outbox.next_attempt_at)
    )


_ITEM_COLUMNS = (
    Outbox.id, Outbox.kind, Outbox.email, Outbox.subscriber_id, Outbox.values,
    Outbox.attempts, Outbox.created_at,
)  # fmt: skip


def _aware(moment: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every one we store is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class OutboxLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, limit: int, lease: dt.timedelta, now: dt.datetime | None = None) -> list[Item]:
        """Up to `limit` due messages, oldest first, held for `lease`: nobody else
        claims them until then, unless a result is recorded first."""
        now = now or utcnow()
        due = (Outbox.state == OutboxState.pending, Outbox.next_attempt_at <= now)
        # A read first, so that an idle deliverer never takes SQLite's write lock.
        with self.engine.connect() as connection:
            if connection.scalar(select(Outbox.id).where(*due).limit(1)) is None:
                return []
        chosen = (
            select(Outbox.id)
            .where(*due)
            .order_by(Outbox.next_attempt_at, Outbox.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has one writer anyway
            # A CTE runs once. As a subquery PostgreSQL may rescan it for each row the
            # update changes, finding `limit` new due rows each time: claiming them all.
            .cte("chosen")
        )
        with db.session(self.engine) as s:
            rows = s.execute(
                update(Outbox)
                .where(Outbox.id.in_(select(chosen.c.id)), *due)
                .values(next_attempt_at=now + lease)
                .returning(*_ITEM_COLUMNS)
                .execution_options(synchronize_session=False)
            ).all()
        items = [
            Item(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], _aware(row[6]))
            for row in rows
        ]
        return sorted(items, key=lambda item: item.id)

    def sent(self, item: Item, reply: str) -> None:
        now = utcnow()
        self._set(
            item, state=OutboxState.sent, attempts=item.attempts + 1, sent_at=now,
            next_attempt_at=now, last_reply=reply[:500],
        )  # fmt: skip

    def failed(self, item: Item, reply: str, *, attempted: bool = True) -> None:
        """Refused for good: never tried again."""
        self._set(
            item, state=OutboxState.failed, attempts=item.attempts + attempted,
            last_reply=reply[:500],
        )  # fmt: skip

    def retry(self, item: Item, reply: str, at: dt.datetime, *, attempted: bool) -> None:
        """Try again at `at`. `attempted` False: the message itself was not tried (no
        connection), so the attempt does not count towards giving up."""
        self._set(
            item, state=OutboxState.pending, attempts=item.attempts + attempted,
            next_attempt_at=at, last_reply=reply[:500],
        )  # fmt: skip

    def release(self, items: Sequence[Item]) -> None:
        """Claimed but not tried: due again now."""
        if items:
            with db.session(self.engine) as s:
                s.execute(
                    update(Outbox)
                    .where(Outbox.id.in_([item.id for item in items]))
                    .where(Outbox.state == OutboxState.pending)
                    .values(next_attempt_at=utcnow())
                )

    def counts(self) -> dict[str, int]:
        """Messages per state: pending, sent, failed (zero included)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(Outbox.state, func.count()).group_by(Outbox.state)
            ).all()
        found = {OutboxState(state).value: count for state, count in rows}
        return {state.value: found.get(state.value, 0) for state in OutboxState}

    def _set(self, item: Item, **values) -> None:
        with db.session(self.engine) as s:
            s.execute(update(Outbox).where(Outbox.id == item.id).values(**values))
