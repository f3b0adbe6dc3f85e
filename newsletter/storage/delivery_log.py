"""The delivery log: one `sends` row per issue, one `deliveries` row per
recipient. The send loop only talks to this store and to a transport.

Safety rests on two rules: a send's recipients are snapshotted in one
transaction when it starts, and a delivery becomes `sent` only after the
server said 2xx. A crash can lose the record of a message the server already
took (it is sent again, with the same Message-ID), never skip anyone.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, bindparam, func, insert, literal, select, text, update

from newsletter.compose import slots
from newsletter.compose.render import PreparedIssue
from newsletter.compose.slots import SlotTemplate
from newsletter.errors import NewsletterError
from newsletter.mail.message import Recipient
from newsletter.storage import db
from newsletter.storage.models import Delivery, DeliveryState, Send, SendState, Status, Subscriber
from newsletter.storage.models import utcnow as _now
from newsletter.storage.subscribers import mark_bounced


class SendBusy(NewsletterError):
    """Another process is sending this issue right now."""


@dataclass(frozen=True)
class Pending:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    attempts: int


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    subscriber_id: int
    state: DeliveryState  # pending means "will be retried"
    attempts: int
    reply: str
    message_id: str | None = None


@dataclass(frozen=True)
class SendInfo:
    id: int
    slug: str
    subject: str
    state: SendState
    total: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    prepared: PreparedIssue


class Store:
    def __init__(self, engine: Engine, *, bounce_limit: int = 1) -> None:
        self.engine = engine
        self.bounce_limit = bounce_limit

    def active_count(self) -> int:
        with db.session(self.engine) as s:
            return s.scalar(
                select(func.count())
                .select_from(Subscriber)
                .where(Subscriber.status == Status.active)
            )

    def active_recipients(self) -> Iterator[Recipient]:
        """Today's active subscribers, streamed (for a dry run)."""
        with self.engine.connect() as conn:
            rows = conn.execution_options(yield_per=1000).execute(
                select(Subscriber.id, Subscriber.email, Subscriber.name)
                .where(Subscriber.status == Status.active)
                .order_by(Subscriber.id)
            )
            for row in rows:
                yield Recipient(*row)

    def find(self, slug: str) -> SendInfo | None:
        with db.session(self.engine) as s:
            row = s.scalar(select(Send).where(Send.slug == slug))
            return _info(row) if row else None

    def start(self, prepared: PreparedIssue) -> SendInfo:
        """The send for this issue: resumed when it exists, else created with a
        snapshot of today's active subscribers, all in one transaction."""
        with db.session(self.engine) as s:
            row = s.scalar(select(Send).where(Send.slug == prepared.slug))
            if row is None:
                prefix = slots.new_prefix()
                row = Send(
                    slug=prepared.slug,
                    subject=prepared.subject,
                    html=_stored(prepared.html, prefix),
                    text=_stored(prepared.text, prefix),
                    slot_prefix=prefix,
                    state=SendState.sending,
                    total=0,
                    started_at=_now(),
                )
                s.add(row)
                s.flush()
                snapshot = select(
                    literal(row.id),
                    Subscriber.id,
                    Subscriber.email,
                    Subscriber.name,
                    literal(DeliveryState.pending.value),
                    literal(0),
                ).where(Subscriber.status == Status.active)
                s.execute(
                    insert(Delivery).from_select(
                        ["send_id", "subscriber_id", "email", "name", "state", "attempts"],
                        snapshot,
                    )
                )
                row.total = s.scalar(
                    select(func.count()).select_from(Delivery).where(Delivery.send_id == row.id)
                )
            elif row.state != SendState.done:
                row.state = SendState.sending
            # Stored prepared bodies win over the file: a resumed send sends what
            # the first recipients got, even if the issue was edited since.
            return _info(row, fallback_name=prepared.fallback_name)

    def pending(self, send_id: int, after_id: int = 0, limit: int = 1000) -> list[Pending]:
        """The next pending deliveries in id order (keyset paging: constant memory)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    Delivery.id,
                    Delivery.subscriber_id,
                    Delivery.email,
                    Delivery.name,
                    Delivery.attempts,
                )
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                # Whoever unsubscribed or bounced since the send started is skipped.
                .where(Subscriber.status == Status.active)
                .where(
                    Delivery.send_id == send_id,
                    Delivery.state == DeliveryState.pending,
                    Delivery.id > after_id,
                )
                .order_by(Delivery.id)
                .limit(limit)
            ).all()
        return [Pending(*row) for row in rows]

    def iter_pending(self, send_id: int, batch: int = 1000) -> Iterator[Pending]:
        after = 0
        while rows := self.pending(send_id, after, batch):
            yield from rows
            after = rows[-1].delivery_id

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Write a batch of results in one transaction."""
        if not outcomes:
            return
        now = _now()
        params = [
            {
                "did": o.delivery_id,
                "state": o.state,
                "attempts": o.attempts,
                "reply": o.reply[:500],
                "mid": o.message_id,
                "sent_at": now if o.state == DeliveryState.sent else None,
            }
            for o in outcomes
        ]
        statement = (
            update(Delivery.__table__)
            .where(Delivery.__table__.c.id == bindparam("did"))
            .values(
                state=bindparam("state"),
                attempts=bindparam("attempts"),
                last_reply=bindparam("reply"),
                message_id=bindparam("mid"),
                sent_at=bindparam("sent_at"),
            )
        )
        bounced = [o.subscriber_id for o in outcomes if o.state == DeliveryState.bounced]
        with db.session(self.engine) as s:
            s.connection().execute(statement, params)
            mark_bounced(s, bounced, self.bounce_limit)

    def drop_departed(self, send_id: int) -> int:
        """Close the pending deliveries of people who left since the send started."""
        with db.session(self.engine) as s:
            result = s.execute(
                update(Delivery)
                .where(
                    Delivery.send_id == send_id,
                    Delivery.state == DeliveryState.pending,
                    Delivery.subscriber_id.in_(
                        select(Subscriber.id).where(Subscriber.status != Status.active)
                    ),
                )
                .values(
                    state=DeliveryState.failed,
                    last_reply="not sent: unsubscribed or bounced after the send started",
                )
            )
            return result.rowcount

    @contextmanager
    def exclusive(self, slug: str):
        """One sender per issue: a second `newsletter send` of it is refused, since
        two would walk the same pending deliveries."""
        busy = SendBusy(
            f"{slug}: another 'newsletter send' of this issue is running; let it finish "
            "(or stop it with Ctrl-C), then run this again"
        )
        if self.engine.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(slug.encode()).digest()[:8], "big") >> 1
            with self.engine.connect() as conn:
                if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                    raise busy
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            return
        database = self.engine.url.database
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

    def finish(self, send_id: int, state: SendState) -> None:
        with db.session(self.engine) as s:
            s.execute(
                update(Send)
                .where(Send.id == send_id)
                .values(state=state, finished_at=_now() if state == SendState.done else None)
            )

    def counts(self, send_id: int) -> dict[DeliveryState, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Delivery.state, func.count())
                .where(Delivery.send_id == send_id)
                .group_by(Delivery.state)
            ).all()
        found = dict(rows)
        return {state: found.get(state, 0) for state in DeliveryState}

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

    def sends(self) -> list[SendInfo]:
        with db.session(self.engine) as s:
            return [_info(row) for row in s.scalars(select(Send).order_by(Send.started_at))]


def _stored(template: SlotTemplate, prefix: str) -> str:
    """A body as text with its slot markers, for SlotTemplate.parse on resume."""
    return template.fill({n: slots.marker(prefix, n) for n in template.names})


def _info(row: Send, fallback_name: str = "there") -> SendInfo:
    prepared = PreparedIssue(
        slug=row.slug,
        subject=row.subject,
        preheader="",
        html=SlotTemplate.parse(row.html, row.slot_prefix),
        text=SlotTemplate.parse(row.text, row.slot_prefix),
        fallback_name=fallback_name,
    )
    return SendInfo(
        row.id, row.slug, row.subject, row.state, row.total, row.started_at,
        row.finished_at, prepared,
    )  # fmt: skip
