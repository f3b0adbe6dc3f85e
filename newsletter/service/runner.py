"""The send loop. It depends on two narrow things: the delivery-log `Store`
and a transport `Connection`; messages come from a `MessageFactory`.

N workers each keep one SMTP connection open; a global pacer holds the
configured rate. 2xx: sent. 4xx, 552 or a dropped connection: retried with
backoff, then failed. 5xx for a recipient: bounced. A server that keeps
refusing pauses the send. Results reach the database in batches.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from newsletter.config import SmtpSection
from newsletter.errors import NewsletterError
from newsletter.mail.message import MessageError, MessageFactory, Recipient
from newsletter.mail.transport import AuthError, Connection, Reply, TransportError
from newsletter.storage.delivery_log import Outcome, Pending, SendInfo, Store
from newsletter.storage.models import DeliveryState

FLUSH_EVERY = 500  # outcomes per database transaction
FLUSH_INTERVAL = 0.25  # seconds
IDLE_REOPEN = 15.0  # seconds a connection may idle before it is reopened instead of reused
log = logging.getLogger("newsletter.service.runner")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


class SendPaused(NewsletterError):
    """The server keeps refusing: stop instead of burning through the list."""


@dataclass
class Report:
    sent: int = 0
    bounced: int = 0
    failed: int = 0
    retried: int = 0
    stopped: bool = False
    paused: str | None = None


class Pacer:
    """A global messages-per-second limit shared by every worker (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self.next)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class Sender:
    def __init__(
        self,
        store: Store,
        send: SendInfo,
        factory: MessageFactory,
        smtp: SmtpSection,
        *,
        on_progress: Callable[[int], None] | None = None,
        connect: Callable[[], Connection] | None = None,
    ) -> None:
        self.store = store
        self.send = send
        self.factory = factory
        self.smtp = smtp
        self.on_progress = on_progress or (lambda done: None)
        self.connect = connect or (lambda: Connection(smtp, helo=factory.domain))
        self.report = Report()
        self.pacer = Pacer(smtp.rate)
        self._outcomes: list[Outcome] = []
        self._retries: list[tuple[float, int, Pending]] = []
        self._tiebreak = itertools.count()
        self._outstanding = 0
        self._failures_in_a_row = 0
        self._halt = asyncio.Event()

    async def run(self, stop: asyncio.Event | None = None) -> Report:
        stop = stop or asyncio.Event()
        queue: asyncio.Queue[Pending | None] = asyncio.Queue(maxsize=self.smtp.connections * 64)
        workers = [
            asyncio.create_task(self._worker(queue, stop)) for _ in range(self.smtp.connections)
        ]
        flusher = asyncio.create_task(self._flusher())
        try:
            await self._produce(queue, stop)
        except SQLAlchemyError as exc:
            self._pause(f"cannot read the delivery log ({_first_line(exc)})")
        finally:
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
            flusher.cancel()
            for wait in (0.0, 0.5, 1.0, 2.0):  # a database locked for a moment gets a few tries
                await asyncio.sleep(wait)
                self._flush()
                if not self._outcomes:
                    break
        if self._outcomes:
            # The server took these but the log could not say so: a resume sends
            # them again, with the same Message-ID.
            self.report.paused = (
                f"{self.report.paused}; {len(self._outcomes)} result(s) could not be recorded "
                "and will be sent again on resume"
            )
        self.report.stopped = stop.is_set() and not self.report.paused
        return self.report

    def _halted(self, stop: asyncio.Event) -> bool:
        return stop.is_set() or self._halt.is_set()

    async def _produce(self, queue: asyncio.Queue, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        rows = self.store.iter_pending(self.send.id)
        exhausted = False
        while not self._halted(stop):
            while self._retries and self._retries[0][0] <= loop.time():
                await queue.put(heapq.heappop(self._retries)[2])
            if not exhausted:
                row = next(rows, None)
                if row is None:
                    exhausted = True
                else:
                    self._outstanding += 1
                    await queue.put(row)
                continue
            if self._outstanding == 0:
                break
            wait = self._retries[0][0] - loop.time() if self._retries else 0.05
            await asyncio.sleep(min(max(wait, 0.001), 0.05))

    async def _worker(self, queue: asyncio.Queue, stop: asyncio.Event) -> None:
        connection: Connection | None = None
        used = 0.0
        while (item := await queue.get()) is not None:
            if self._halted(stop):
                self._outstanding -= 1  # left pending for the next run
                continue
            try:
                connection, used = await self._deliver(item, connection, used)
            except Exception as exc:  # never hang and never lose a delivery over a surprise
                log.exception("unexpected error sending to %s", item.email)
                self._outstanding -= 1  # left pending for the next run
                self._pause(f"unexpected error ({exc.__class__.__name__}: {exc})")
        if connection is not None:
            await connection.close()

    async def _deliver(
        self, item: Pending, connection: Connection | None, used: float
    ) -> tuple[Connection | None, float]:
        loop = asyncio.get_running_loop()
        if connection is not None and loop.time() - used > IDLE_REOPEN:
            await connection.close()  # servers drop idle clients; reopening costs no attempt
            connection = None
        if connection is None:
            connection = await self._open()
            if connection is None:
                self._requeue(item)  # the server's trouble, not this subscriber's: no attempt
                return None, 0.0
        try:
            data, message_id = self.factory.build_with_id(
                Recipient(item.subscriber_id, item.email, item.name)
            )
        except (MessageError, UnicodeError, ValueError) as exc:
            self._done(item, DeliveryState.failed, item.attempts, f"not sent: {exc}", "")
            return connection, used
        await self.pacer.wait()
        try:
            stage, reply = await connection.send(
                self.factory.sender, item.email, data, wire_ready=True
            )
        except TransportError as exc:
            self._connection_failed(str(exc))
            self._retry(item, str(exc))  # it may be this message the server chokes on
            return None, 0.0
        self._classify(item, stage, reply, message_id)
        return connection, loop.time()

    async def _open(self) -> Connection | None:
        connection = self.connect()
        try:
            await connection.open()
            return connection
        except AuthError as exc:
            self._pause(str(exc))
        except TransportError as exc:
            self._connection_failed(str(exc))
            # Back off before the next attempt, longer the more failures in a row.
            await asyncio.sleep(min(0.05 * 2**self._failures_in_a_row, 5.0))
        return None

    def _requeue(self, item: Pending) -> None:
        due = asyncio.get_running_loop().time() + min(0.05 * 2**self._failures_in_a_row, 5.0)
        heapq.heappush(self._retries, (due, next(self._tiebreak), item))

    def _connection_failed(self, reason: str) -> None:
        self._failures_in_a_row += 1
        if self._failures_in_a_row >= self.smtp.pause_after:
            self._pause(f"{self._failures_in_a_row} connection failures in a row (last: {reason})")

    def _pause(self, reason: str) -> None:
        if not self.report.paused:
            self.report.paused = reason
        self._halt.set()

    def _classify(self, item: Pending, stage: str, reply: Reply, message_id: str) -> None:
        attempts = item.attempts + 1
        if reply.ok:
            self._failures_in_a_row = 0
            self._done(item, DeliveryState.sent, attempts, str(reply), message_id)
        elif reply.transient or stage == "mail":
            # A refused MAIL FROM is the sender's problem, not this recipient's.
            if stage == "mail":
                self._connection_failed(str(reply))
            else:
                self._failures_in_a_row = 0
            self._retry(item, str(reply))
        elif stage == "rcpt":
            self._failures_in_a_row = 0
            self._done(item, DeliveryState.bounced, attempts, str(reply), message_id)
        else:
            self._failures_in_a_row = 0
            self._done(item, DeliveryState.failed, attempts, str(reply), message_id)

    def _done(
        self, item: Pending, state: DeliveryState, attempts: int, reply: str, message_id: str
    ) -> None:
        self._outstanding -= 1
        setattr(self.report, state.value, getattr(self.report, state.value) + 1)
        mid = message_id if state == DeliveryState.sent else None
        self._add(Outcome(item.delivery_id, item.subscriber_id, state, attempts, reply, mid))

    def _retry(self, item: Pending, reason: str) -> None:
        attempts = item.attempts + 1
        if attempts >= self.smtp.max_attempts:
            self._done(item, DeliveryState.failed, attempts, reason, "")
            return
        self.report.retried += 1
        again = Pending(item.delivery_id, item.subscriber_id, item.email, item.name, attempts)
        due = asyncio.get_running_loop().time() + self.smtp.retry_delay * 2 ** (attempts - 1)
        heapq.heappush(self._retries, (due, next(self._tiebreak), again))
        self._add(
            Outcome(item.delivery_id, item.subscriber_id, DeliveryState.pending, attempts, reason)
        )

    def _add(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        if len(self._outcomes) >= FLUSH_EVERY:
            self._flush()

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self._flush()

    def _flush(self) -> None:
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        try:
            self.store.record(batch)
        except SQLAlchemyError as exc:
            self._outcomes[:0] = batch  # kept, to be written by the next flush
            self._pause(f"cannot write the delivery log ({_first_line(exc)})")
            return
        self.on_progress(sum(o.state != DeliveryState.pending for o in batch))


async def send_test(factory: MessageFactory, smtp: SmtpSection, address: str) -> Reply:
    """One [TEST] copy to one address; nothing is recorded."""
    connection = Connection(smtp, helo=factory.domain)
    await connection.open()
    try:
        data = factory.build(Recipient(0, address, ""))
        _, reply = await connection.send(factory.sender, address, data)
        return reply
    finally:
        await connection.close()
