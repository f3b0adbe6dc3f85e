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
from collections.abc import Iterator, Sequence

from sqlalchemy import Engine, func, insert, literal, or_, select, update

from newsletter.storage import db
from newsletter.storage.locks import SendBusy, exclusive
from newsletter.storage.models import Delivery, DeliveryState, Send, SendState, Status, Subscriber
from newsletter.storage.models import utcnow as now
from newsletter.storage.records import (
    NOT_STARTED,
    Claimed,
    NewSend,
    SendRecord,
    SendSummary,
    record_of,
)
from newsletter.storage.relays import RelayState, read_relays, write_relay
from newsletter.storage.result_writer import Result, ResultWriter

__all__ = [
    "Claimed",
    "DeliveryLog",
    "NewSend",
    "RelayState",
    "Result",
    "SendBusy",
    "SendRecord",
    "SendSummary",
    "exclusive",
]


DEPARTED = "not sent: unsubscribed or bounced after the send started"


class DeliveryLog:
    def __init__(self, engine: Engine, *, bounce_limit: int = 1) -> None:
        self.engine = engine
        self.bounce_limit = bounce_limit

    # Sends ---------------------------------------------------------------------------

    def find(self, slug: str) -> SendRecord | None:
        with db.session(self.engine) as s:
            row = s.scalar(select(Send).where(Send.slug == slug))
            return record_of(row) if row else None

    def sends(self) -> list[SendRecord]:
        with db.session(self.engine) as s:
            return [record_of(row) for row in s.scalars(select(Send).order_by(Send.started_at))]

    def start(self, new: NewSend) -> SendRecord:
        """The send of this issue: resumed when it exists, else created (or, scheduled,
        started) with a snapshot of today's active subscribers, all in one transaction.
        A resumed send keeps the bodies it started with: readers get one version of an
        issue; a scheduled one takes the bodies it is started with (nobody has any yet).
        The settings' fingerprint is kept the same way (the service refuses others)."""
        with db.session(self.engine) as s:
            row = s.scalar(select(Send).where(Send.slug == new.slug))
            if row is None:
                row = Send(slug=new.slug, state=SendState.scheduled, total=0)
                s.add(row)
            if row.state in NOT_STARTED:
                _bodies(row, new)
                row.state, row.started_at = SendState.sending, now()
                row.fingerprint = new.fingerprint
                s.flush()
                row.total = _snapshot(s, row.id)
            else:
                if row.state != SendState.done:
                    row.state = SendState.sending
                if row.fingerprint is None:  # started before it was kept: from now on
                    row.fingerprint = new.fingerprint
                if row.web_html is None and row.source_hash == new.source_hash:
                    # Started before the archive page was kept: the file is unchanged,
                    # so this page is of the version readers were sent.
                    row.title, row.issue_date = new.title, new.issue_date
                    row.web_html = new.web_html
            return record_of(row)

    def schedule(self, new: NewSend, at: dt.datetime) -> SendRecord:
        """Store a send to start at `at` (UTC), without a snapshot: who gets it is decided
        when it starts. A send not started yet is rescheduled; a started one is returned
        as it is (the caller refuses)."""
        with db.session(self.engine) as s:
            row = s.scalar(select(Send).where(Send.slug == new.slug))
            if row is None:
                row = Send(slug=new.slug, total=0)
                s.add(row)
            elif row.state not in NOT_STARTED:
                return record_of(row)
            _bodies(row, new)
            row.state, row.scheduled_at, row.started_at = SendState.scheduled, at, now()
            s.flush()
            return record_of(row)

    def unschedule(self, send_id: int, state: SendState) -> bool:
        """A scheduled send becomes `late` or `cancelled`; False when it was no longer
        waiting (started, or cancelled, by someone else meanwhile)."""
        waiting = [SendState.scheduled] + ([SendState.late] if state != SendState.late else [])
        with db.session(self.engine) as s:
            return bool(
                s.execute(
                    update(Send)
                    .where(Send.id == send_id, Send.state.in_(waiting))
                    .values(state=state)
                ).rowcount
            )

    def waiting(self) -> list[SendRecord]:
        """Scheduled and late sends, soonest first."""
        with db.session(self.engine) as s:
            rows = s.scalars(
                select(Send)
                .where(Send.state.in_([SendState.scheduled, SendState.late]))
                .order_by(Send.scheduled_at)
            )
            return [record_of(row) for row in rows]

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

    def claim(self, send_id: int, worker: str, limit: int, lease: float) -> list[Claimed]:
        """Up to `limit` pending deliveries nobody holds (or whose lease ran out), now
        held by `worker` for `lease` seconds (by the database's clock), in id order.
        Whoever unsubscribed or bounced since the send started is not claimed."""
        now = db.epoch_now(self.engine)
        free = or_(Delivery.lease_until.is_(None), Delivery.lease_until < now)
        chosen = (
            select(Delivery.id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.send_id == send_id, Delivery.state == DeliveryState.pending)
            .where(Subscriber.status == Status.active, free)
            .order_by(Delivery.id)
            .limit(limit)
            # PostgreSQL; SQLite has one writer anyway.
            .with_for_update(skip_locked=True, of=Delivery)
            # A CTE runs once. As a subquery PostgreSQL may rescan it for each row the
            # update changes, finding `limit` new rows each time: claiming them all.
            .cte("chosen")
        )
        with db.session(self.engine) as s:
            rows = s.execute(
                update(Delivery)
                .where(Delivery.id.in_(select(chosen.c.id)))
                .values(claimed_by=worker, lease_until=now + lease)
                .returning(*_CLAIMED_COLUMNS)
                .execution_options(synchronize_session=False)
            ).all()
        return sorted((Claimed(*row) for row in rows), key=lambda c: c.delivery_id)

    def renew(self, send_id: int, worker: str, lease: float) -> int:
        """Hold `worker`'s claims `lease` seconds more; how many it still holds."""
        with db.session(self.engine) as s:
            return s.execute(
                update(Delivery)
                .where(Delivery.send_id == send_id, Delivery.claimed_by == worker)
                .where(Delivery.state == DeliveryState.pending)
                .values(lease_until=db.epoch_now(self.engine) + lease)
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

    def set_relay(
        self, name: str, state: str, cool_until: float | None = None, error: str | None = None
    ) -> None:
        """A relay's health ('ok', or 'cooling' until epoch `cool_until`), for every sender."""
        write_relay(self.engine, name, state, cool_until, error)

    def relays(self) -> dict[str, RelayState]:
        return read_relays(self.engine)

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

    def retry_failed(self, send_id: int) -> int:
        """Return the send's failed deliveries (temporary failures that ran out of
        attempts) to the pool with their attempts reset, and the send to `paused` so that
        an interrupted retry resumes like any send; one transaction. Whoever left since is
        not returned: their delivery is `skipped`."""
        with db.session(self.engine) as s:
            self._close_departed(s, send_id, DeliveryState.failed)
            count = s.execute(
                update(Delivery)
                .where(Delivery.send_id == send_id, Delivery.state == DeliveryState.failed)
                .values(state=DeliveryState.pending, attempts=0, claimed_by=None, lease_until=None)
            ).rowcount
            if count:
                s.execute(
                    update(Send)
                    .where(Send.id == send_id)
                    .values(state=SendState.paused, finished_at=None)
                )
            return count

    def drop_departed(self, send_id: int) -> int:
        """Skip the pending deliveries of people who left since the send started."""
        with db.session(self.engine) as s:
            return self._close_departed(s, send_id, DeliveryState.pending)

    @staticmethod
    def _close_departed(s, send_id: int, state: DeliveryState) -> int:
        return s.execute(
            update(Delivery)
            .where(Delivery.send_id == send_id, Delivery.state == state)
            .where(
                Delivery.subscriber_id.in_(
                    select(Subscriber.id).where(Subscriber.status != Status.active)
                )
            )
            .values(
                state=DeliveryState.skipped,
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


def _bodies(row: Send, new: NewSend) -> None:
    row.subject, row.html, row.text = new.subject, new.html, new.text
    row.slot_prefix, row.source_hash = new.slot_prefix, new.source_hash
    if new.web_html is not None:  # a scheduled send started from its stored bodies keeps its page
        row.title, row.issue_date, row.web_html = new.title, new.issue_date, new.web_html
