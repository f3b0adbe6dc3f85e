"""Who takes part in a shared send: every process that sends for it (the editor's
`newsletter send` and any `newsletter worker` on any host sharing the database)
says it is alive now and then. The status lists them with what each sent (read
from the delivery log itself, so a worker killed mid-send still shows its
share), and relays split their rate between the live ones.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass

from sqlalchemy import Engine, case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from newsletter.storage import db
from newsletter.storage.models import Delivery, DeliveryState, Send, SendState, Status, Subscriber
from newsletter.storage.models import Worker as WorkerRow
from newsletter.storage.models import utcnow as now
from newsletter.storage.records import utc

FORGET_AFTER = dt.timedelta(days=7)


@dataclass(frozen=True)
class WorkerSeen:
    id: str
    host: str
    pid: int | None
    sent: int
    failed: int
    last_seen: dt.datetime | None


class WorkerBook:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    def beat(self, worker: str, send_id: int | None) -> None:
        """This process is alive and working on `send_id` (None: on nothing)."""
        moment = now()
        values = {"host": socket.gethostname()[:200], "pid": os.getpid(), "send_id": send_id}
        statement = self._insert(WorkerRow).values(
            id=worker, started_at=moment, last_seen=moment, **values
        )
        statement = statement.on_conflict_do_update(
            index_elements=[WorkerRow.id], set_={"last_seen": moment, **values}
        )
        with db.session(self.engine) as s:
            s.execute(statement)

    def leave(self, worker: str) -> None:
        """This process works on no send now. Rows of processes not heard of for a
        while go: a `worker --once` from cron would otherwise add one a minute for
        ever (what each sent stays in the delivery log)."""
        with db.session(self.engine) as s:
            s.execute(update(WorkerRow).where(WorkerRow.id == worker).values(send_id=None))
            s.execute(delete(WorkerRow).where(WorkerRow.last_seen < now() - FORGET_AFTER))

    def others_sending(self, send_id: int, worker: str) -> int:
        """How many other processes hold live claims of the send: those a relay's rate
        is split with (one that waits with nothing in hand takes no share)."""
        with self.engine.connect() as conn:
            return conn.scalar(
                select(func.count(func.distinct(Delivery.claimed_by)))
                .where(Delivery.send_id == send_id, Delivery.state == DeliveryState.pending)
                .where(Delivery.claimed_by != worker)
                .where(Delivery.lease_until > db.epoch_now(self.engine))
            )

    def of_send(self, send_id: int) -> list[WorkerSeen]:
        """Everyone who recorded a result for the send or works on it now."""
        sent = func.sum(case((Delivery.state == DeliveryState.sent, 1), else_=0))
        failed = func.sum(case((Delivery.state != DeliveryState.sent, 1), else_=0))
        tally = (
            select(Delivery.worker, sent.label("sent"), failed.label("failed"))
            .where(Delivery.send_id == send_id, Delivery.worker.is_not(None))
            .group_by(Delivery.worker)
            .subquery()
        )
        with self.engine.connect() as conn:
            counted = {row.worker: row for row in conn.execute(select(tally))}
            rows = conn.execute(
                select(WorkerRow).where(
                    or_(WorkerRow.send_id == send_id, WorkerRow.id.in_(list(counted)))
                )
            ).all()
        known = {row.id: row for row in rows}
        seen = []
        for worker in sorted(set(counted) | set(known)):
            row, tally_row = known.get(worker), counted.get(worker)
            seen.append(
                WorkerSeen(
                    worker,
                    row.host if row else worker.rsplit(":", 1)[0],
                    row.pid if row else None,
                    int(tally_row.sent) if tally_row else 0,
                    int(tally_row.failed) if tally_row else 0,
                    utc(row.last_seen) if row else None,
                )
            )
        return seen

    # A shared send, as its participants see it ------------------------------------

    def held_elsewhere(self, send_id: int, worker: str) -> int:
        """Deliveries still to go that are not `worker`'s: others hold them (their
        leases may run out, and then they are claimable), or nobody does yet."""
        with self.engine.connect() as conn:
            return conn.scalar(
                select(func.count())
                .select_from(Delivery)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Delivery.send_id == send_id, Delivery.state == DeliveryState.pending)
                .where(Subscriber.status == Status.active)
                .where(or_(Delivery.claimed_by.is_(None), Delivery.claimed_by != worker))
            )

    def state(self, send_id: int) -> SendState | None:
        with self.engine.connect() as conn:
            return conn.scalar(select(Send.state).where(Send.id == send_id))

    def joinable(self) -> list[str]:
        """Slugs of sends under way with deliveries nobody holds (or whose holder's
        lease ran out): a worker may join them."""
        now = db.epoch_now(self.engine)
        free = or_(Delivery.lease_until.is_(None), Delivery.lease_until < now)
        with self.engine.connect() as conn:
            return list(
                conn.scalars(
                    select(Send.slug)
                    .where(Send.state == SendState.sending)
                    .where(
                        select(Delivery.id)
                        .where(Delivery.send_id == Send.id)
                        .where(Delivery.state == DeliveryState.pending, free)
                        .exists()
                    )
                    .order_by(Send.started_at)
                )
            )

    # What the status shows of a send under way --------------------------------------

    def sent_since(self, send_id: int, seconds: float) -> int:
        since = now() - dt.timedelta(seconds=seconds)
        with self.engine.connect() as conn:
            return conn.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.send_id == send_id, Delivery.state == DeliveryState.sent)
                .where(Delivery.sent_at >= since)
            )

    def relay_tally(self, send_id: int) -> dict[str, tuple[int, int]]:
        """Per relay: (sent, not sent) of the final results that went through it."""
        sent = func.sum(case((Delivery.state == DeliveryState.sent, 1), else_=0))
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Delivery.relay, sent, func.count())
                .where(Delivery.send_id == send_id, Delivery.relay.is_not(None))
                .group_by(Delivery.relay)
            ).all()
        return {relay: (int(s), int(total) - int(s)) for relay, s, total in rows}
