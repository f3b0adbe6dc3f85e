"""The delivery log: one `sends` row per issue, one `deliveries` row per
recipient. The send runner talks only to this log and to a transport.

Safety rests on three rules: a send's recipients are snapshotted in one
transaction when it starts; a worker works only on deliveries it has claimed
(claims carry a lease, so a dead worker's claims return to the pool); and a
delivery becomes `sent` only after the server said 2xx. A crash can lose the
record of a message the server already took (it is sent again, with the same
Message-ID), never skip anyone.

Storage knows nothing of rendering or mail: a send's bodies are stored as the
text the service hands over, slot markers and all.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, func, insert, literal, or_, select, update

from newsletter.storage import db
from newsletter.storage.locks import SendBusy, exclusive
from newsletter.storage.models import Delivery, DeliveryState, Send, SendState, Status, Subscriber
from newsletter.storage.models import utcnow as now
from newsletter.storage.result_writer import Result, ResultWriter

__all__ = [
    "Claimed",
    "DeliveryLog",
    "NewSend",
    "Result",
    "SendBusy",
    "SendRecord",
    "SendSummary",
    "exclusive",
]


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker holds: whom to send to, and how often it was tried."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    attempts: int


@dataclass(frozen=True)
class SendRecord:
    id: int
    slug: str
    subject: str
    state: SendState
    total: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    html: str
    text: str
    slot_prefix: str
    source_hash: str | None
    # The archive's page of the issue; None for sends started before it was kept.
    title: str | None = None
    issue_date: dt.date | None = None
    web_html: str | None = None


@dataclass(frozen=True)
class SendSummary:
    id: int
    slug: str
    subject: str
    title: str | None
    issue_date: dt.date | None
    state: SendState
    started_at: dt.datetime
    finished_at: dt.datetime | None
    sent: int  # deliveries that left


@dataclass(frozen=True)
class NewSend:
    """What a send stores about its issue when it starts."""

    slug: str
    subject: str
    html: str
    text: str
    slot_prefix: str
    source_hash: str
    title: str | None = None
    issue_date: dt.date | None = None
    web_html: str | None = None


DEPARTED = "not sent: unsubscribed or bounced after the send started"


class DeliveryLog:
    def __init__(self, engine: Engine, *, bounce_limit: int = 1) -> None:
        self.engine = engine
        self.bounce_limit = bounce_limit

    # Sends ---------------------------------------------------------------------------

    def find(self, slug: str) -> SendRecord | None:
        with db.session(self.engine) as s:
            row = s.scalar(select(Send).where(Send.slug == slug))
            return _record(row) if row else None

    def sends(self) -> list[SendRecord]:
        with db.session(self.engine) as s:
            return [_record(row) for row in s.scalars(select(Send).order_by(Send.started_at))]

    def start(self, new: NewSend) -> SendRecord:
        """The send of this issue: resumed when it exists, else created with a snapshot
        of today's active subscribers, all in one transaction. A resumed send keeps the
        bodies it started with: readers get one version of an issue."""
        with db.session(self.engine) as s:
            row = s.scalar(select(Send).where(Send.slug == new.slug))
            if row is None:
                row = Send(
                    slug=new.slug, subject=new.subject, html=new.html, text=new.text,
                    slot_prefix=new.slot_prefix, source_hash=new.source_hash,
                    title=new.title, issue_date=new.issue_date, web_html=new.web_html,
                    state=SendState.sending, total=0,
                    started_at=now(),
                )  # fmt: skip
                s.add(row)
                s.flush()
                row.total = _snapshot(s, row.id)
            else:
                if row.state != SendState.done:
                    row.state = SendState.sending
                if row.web_html is None and row.source_hash == new.source_hash:
                    # Started before the archive page was kept: the file is unchanged,
                    # so this page is of the version readers were sent.
                    row.title, row.issue_date = new.title, new.issue_date
                    row.web_html = new.web_html
            return _record(row)

    def finish(self, send_id: int, state: SendState) -> None:
        with db.session(self.engine) as s:
            s.execute(
                update(Send)
                .where(Send.id == send_id)
                .values(state=state, finished_at=now() if state == SendState.done else None)
            )

    # Recipients ----------------------------------------------------------------------

    def active_count(self) -> int:
        with db.session(self.engine) as s:
            return s.scalar(
                select(func.count())
                .select_from(Subscriber)
                .where(Subscriber.status == Status.active)
            )

    def active_recipients(self) -> Iterator[Claimed]:
        """Today's active subscribers, streamed (for a dry run of a new send)."""
        with self.engine.connect() as conn:
            rows = conn.execution_options(yield_per=1000).execute(
                select(Subscriber.id, Subscriber.id, Subscriber.email, Subscriber.name, literal(0))
                .where(Subscriber.status == Status.active)
                .order_by(Subscriber.id)
            )
            for row in rows:
                yield Claimed(*row)

    def iter_pending(self, send_id: int, batch: int = 1000) -> Iterator[Claimed]:
        """Pending deliveries in id order, claimed or not (for a dry run of a resume)."""
        after = 0
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    _pending(send_id).where(Delivery.id > after).order_by(Delivery.id).limit(batch)
                ).all()
            if not rows:
                return
            yield from (Claimed(*row) for row in rows)
            after = rows[-1][0]

    # Claims and results --------------------------------------------------------------

    def claim(self, send_id: int, worker: str, limit: int, lease_until: float) -> list[Claimed]:
        """Up to `limit` pending deliveries nobody holds (or whose lease ran out), now
        held by `worker` until `lease_until` (epoch seconds), in id order. Whoever
        unsubscribed or bounced since the send started is not claimed."""
        free = or_(Delivery.lease_until.is_(None), Delivery.lease_until < time.time())
        chosen = (
            select(Delivery.id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.send_id == send_id, Delivery.state == DeliveryState.pending)
            .where(Subscriber.status == Status.active, free)
            .order_by(Delivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has one writer anyway
        )
        with db.session(self.engine) as s:
            rows = s.execute(
                update(Delivery)
                .where(Delivery.id.in_(chosen.scalar_subquery()))
                .values(claimed_by=worker, lease_until=lease_until)
                .returning(*_CLAIMED_COLUMNS)
                .execution_options(synchronize_session=False)
            ).all()
        return sorted((Claimed(*row) for row in rows), key=lambda c: c.delivery_id)

    def renew(self, send_id: int, worker: str, lease_until: float) -> int:
        with db.session(self.engine) as s:
            return s.execute(
                update(Delivery)
                .where(Delivery.send_id == send_id, Delivery.claimed_by == worker)
                .where(Delivery.state == DeliveryState.pending)
                .values(lease_until=lease_until)
            ).rowcount

    def release(self, send_id: int, worker: str | None = None) -> int:
        """Return claims to the pool: this worker's, or (worker None, for a sender that
        holds the issue's lock and so knows every other claim is stale) everyone's."""
        query = update(Delivery).where(
            Delivery.send_id == send_id, Delivery.state == DeliveryState.pending
        )
        if worker is not None:
            query = query.where(Delivery.claimed_by == worker)
        with db.session(self.engine) as s:
            return s.execute(query.values(claimed_by=None, lease_until=None)).rowcount

    def writer(self) -> ResultWriter:
        """A writer of results on a connection of its own (close it when done)."""
        return ResultWriter(self.engine, self.bounce_limit)

    def record(self, results: Sequence[Result]) -> None:
        """Write results in one transaction (a retried delivery stays claimed)."""
        if not results:
            return
        writer = self.writer()
        try:
            writer.record(results)
        finally:
            writer.close()

    def departed(self, send_id: int, worker: str) -> set[int]:
        """Deliveries `worker` holds whose subscriber left (unsubscribed, bounced) since."""
        with self.engine.connect() as conn:
            return set(
                conn.scalars(
                    select(Delivery.id)
                    .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                    .where(Delivery.send_id == send_id, Delivery.claimed_by == worker)
                    .where(Delivery.state == DeliveryState.pending)
                    .where(Subscriber.status != Status.active)
                )
            )

    def drop_departed(self, send_id: int) -> int:
        """Close the pending deliveries of people who left since the send started."""
        with db.session(self.engine) as s:
            return s.execute(
                update(Delivery)
                .where(Delivery.send_id == send_id, Delivery.state == DeliveryState.pending)
                .where(
                    Delivery.subscriber_id.in_(
                        select(Subscriber.id).where(Subscriber.status != Status.active)
                    )
                )
                .values(
                    state=DeliveryState.failed,
                    last_reply=DEPARTED,
                    claimed_by=None,
                    lease_until=None,
                )
            ).rowcount

    # Reading -------------------------------------------------------------------------

    def counts(self, send_id: int) -> dict[DeliveryState, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Delivery.state, func.count())
                .where(Delivery.send_id == send_id)
                .group_by(Delivery.state)
            ).all()
        found = dict(rows)
        return {state: found.get(state, 0) for state in DeliveryState}

    def summaries(self) -> list[SendSummary]:
        """Every send without its bodies, and how many of its deliveries left: what a
        listing needs, at a small fraction of the cost of `sends()`."""
        sent = (
            select(Delivery.send_id, func.count().label("sent"))
            .where(Delivery.state == DeliveryState.sent)
            .group_by(Delivery.send_id)
            .subquery()
        )
        query = select(
            Send.id, Send.slug, Send.subject, Send.title, Send.issue_date, Send.state,
            Send.started_at, Send.finished_at, func.coalesce(sent.c.sent, 0),
        ).outerjoin(sent, sent.c.send_id == Send.id)  # fmt: skip
        with self.engine.connect() as conn:
            return [SendSummary(*row) for row in conn.execute(query.order_by(Send.started_at))]

    def problems(self, send_id: int, limit: int = 50) -> list[tuple[str, str, int, str]]:
        """Failed and bounced deliveries, and pending ones that were retried."""
        with self.engine.connect() as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    select(Delivery.email, Delivery.state, Delivery.attempts, Delivery.last_reply)
                    .where(Delivery.send_id == send_id, Delivery.last_reply.is_not(None))
                    .where(Delivery.state != DeliveryState.sent)
                    .order_by(Delivery.id)
                    .limit(limit)
                )
            ]


_CLAIMED_COLUMNS = (
    Delivery.id,
    Delivery.subscriber_id,
    Delivery.email,
    Delivery.name,
    Delivery.attempts,
)


def _pending(send_id: int):
    return (
        select(*_CLAIMED_COLUMNS)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Subscriber.status == Status.active)
        .where(Delivery.send_id == send_id, Delivery.state == DeliveryState.pending)
    )


def _snapshot(session, send_id: int) -> int:
    snapshot = select(
        literal(send_id),
        Subscriber.id,
        Subscriber.email,
        Subscriber.name,
        literal(DeliveryState.pending.value),
        literal(0),
    ).where(Subscriber.status == Status.active)
    session.execute(
        insert(Delivery).from_select(
            ["send_id", "subscriber_id", "email", "name", "state", "attempts"], snapshot
        )
    )
    return session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.send_id == send_id)
    )


def _record(row: Send) -> SendRecord:
    return SendRecord(
        row.id, row.slug, row.subject, row.state, row.total, row.started_at,
        row.finished_at, row.html, row.text, row.slot_prefix, row.source_hash,
        row.title, row.issue_date, row.web_html,
    )  # fmt: skip
