"""Recording results, the send's hottest write: plain DB-API statements on a
connection of the writer's own, so each commit costs little more than the
database's own work (an ORM session per result would cost more than its commit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from newsletter.storage.models import DeliveryState, Status, utcnow


@dataclass(frozen=True)
class Result:
    delivery_id: int
    subscriber_id: int
    state: DeliveryState  # pending means "will be retried"
    attempts: int
    reply: str
    message_id: str | None = None
    worker: str | None = None  # who recorded it (final results)
    relay: str | None = None  # the relay that took or refused it


_FINAL = (
    "UPDATE deliveries SET state = {m}, attempts = {m}, last_reply = {m}, message_id = {m}, "
    "sent_at = {m}, worker = {m}, relay = {m}, claimed_by = NULL, lease_until = NULL "
    "WHERE id = {m}"
)
# A retried delivery keeps its claim: the runner that holds it tries again.
_RETRY = "UPDATE deliveries SET state = {m}, attempts = {m}, last_reply = {m} WHERE id = {m}"
# A result from a runner counts only while it holds the delivery: one whose lease ran
# out (a stall, a lost host) and whose delivery another runner took over must not
# reopen or overwrite what that one recorded. Results kept in a journal by a process
# that died are written without the check (their claims were given back).
_HELD = " AND claimed_by = {m}"
_BOUNCE = "UPDATE subscribers SET bounce_count = bounce_count + 1 WHERE id = {m}"
_BOUNCED = "UPDATE subscribers SET status = {m} WHERE id = {m} AND bounce_count >= {m}"


class ResultWriter:
    def __init__(self, engine: Engine, bounce_limit: int) -> None:
        self.bounce_limit = bounce_limit
        self._sqlite = engine.dialect.name == "sqlite"
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._sql = {name: sql.format(m=mark) for name, sql in _STATEMENTS.items()}
        self._connection = engine.raw_connection()
        if not self._sqlite:
            # Each connection waits for its last result's commit before the next
            # message: a flush to disk per commit would cap a send at ~200 msg/s. A
            # commit without the flush still survives this process dying (the crash
            # the gate guards against); a crash of the database server itself may
            # lose the last fraction of a second of results, whose messages then go
            # again with the same Message-ID.
            cursor = self._connection.cursor()
            cursor.execute("SET synchronous_commit = off")
            cursor.close()
            self._connection.commit()

    def record(self, results: Sequence[Result]) -> None:
        """Write results in one transaction; on failure nothing of it is kept."""
        stamp = self._stamp()
        rows: dict[str, list[tuple]] = {"final": [], "retry": [], "final_held": [],
                                        "retry_held": []}  # fmt: skip
        bounced = []
        for r in results:
            reply = r.reply[:500]
            held = ("_held", (r.worker,)) if r.worker else ("", ())
            if r.state == DeliveryState.pending:
                row = (r.state.value, r.attempts, reply, r.delivery_id)
                rows["retry" + held[0]].append(row + held[1])
                continue
            sent_at = stamp if r.state == DeliveryState.sent else None
            relay = r.relay[:200] if r.relay else None
            row = (r.state.value, r.attempts, reply, r.message_id, sent_at, r.worker, relay,
                   r.delivery_id)  # fmt: skip
            rows["final" + held[0]].append(row + held[1])
            if r.state == DeliveryState.bounced:
                bounced.append(r.subscriber_id)
        cursor = self._connection.cursor()
        try:
            for name, batch in rows.items():
                if batch:
                    cursor.executemany(self._sql[name], batch)
            if bounced:
                cursor.executemany(self._sql["bounce"], [(i,) for i in bounced])
                marked = [(Status.bounced.value, i, self.bounce_limit) for i in bounced]
                cursor.executemany(self._sql["bounced"], marked)
            self._connection.commit()
        except BaseException:
            self._connection.rollback()
            raise
        finally:
            cursor.close()

    def close(self) -> None:
        self._connection.close()

    def _stamp(self):
        now = utcnow()
        # SQLAlchemy keeps SQLite datetimes as naive UTC text in this exact form.
        return now.strftime("%Y-%m-%d %H:%M:%S.%f") if self._sqlite else now


_STATEMENTS = {
    "final": _FINAL,
    "retry": _RETRY,
    "final_held": _FINAL + _HELD,
    "retry_held": _RETRY + _HELD,
    "bounce": _BOUNCE,
    "bounced": _BOUNCED,
}
