"""The send runner. It depends on two narrow things: the delivery log (claims
and results, through the Recorder's writer thread) and a transport
`Connection`; messages come from a `MessageFactory`.

Each of N connection tasks keeps one SMTP connection open and takes work from
a shared queue of claimed deliveries; a global pacer holds the configured
rate. 2xx: sent. 4xx, 552 or a dropped connection: retried with backoff, then
failed ([smtp] max_attempts tries per delivery in each run: a resumed or retried
send gives everyone left fresh tries). 5xx for a recipient: bounced. Whoever left
the list since the send started: skipped. A server that keeps refusing pauses the
send. Before a connection sends the next message's data, the previous result
on that connection has been committed: a crash resends at most one message
per connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.config import SmtpSection
from newsletter.mail.message import MessageError, MessageFactory, Recipient
from newsletter.mail.transport import AuthError, Connection, Reply, TransportError, helo_name
from newsletter.service.pacing import Backoff, Pacer, RetryQueue
from newsletter.service.recorder import Recorder, RecordError
from newsletter.storage.delivery_log import DEPARTED, Claimed, DeliveryLog, Result
from newsletter.storage.models import DeliveryState, SendState
from newsletter.storage.workers import WorkerBook

CLAIM_BATCH = 500  # deliveries per claim, at most
CLAIM_SECONDS = 2.0  # a throttled sender claims about this long's worth of work
LEASE = 60.0  # seconds a claim holds; renewed while the runner works
WATCH_EVERY = 1.0  # seconds between looks for readers who left during the send
BEAT_EVERY = 2.0  # seconds between "still here" notes in the workers table
SHARED_POLL = 1.0  # seconds between looks at a shared send others still work on
IDLE_REOPEN = 15.0  # seconds a connection may idle before it is reopened instead of reused
log = logging.getLogger("newsletter.runner")


def worker_id() -> str:
    return f"{socket.gethostname()[:60]}:{uuid.uuid4().hex[:12]}"


@dataclass
class Report:
    sent: int = 0
    bounced: int = 0
    failed: int = 0
    skipped: int = 0
    stopped: bool = False
    paused: str | None = None
    unrecorded: int = 0  # results the log refused: their messages may go out again


class Runner:
    def __init__(
        self,
        log: DeliveryLog,
        send_id: int,
        factory: MessageFactory,
        smtp: SmtpSection,
        *,
        on_progress: Callable[[int], None] | None = None,
        connect: Callable[[], Connection] | None = None,
        worker: str | None = None,
        book: WorkerBook | None = None,
        shared: bool = False,
        lease: float = LEASE,
    ) -> None:
        """`book` notes this process in the workers table; `shared`: others may work on
        the same send (PostgreSQL), so running out of claims is not the end of it while
        they hold deliveries, and a pause by any of them stops this one too."""
        self.log = log
        self.book = book
        self.shared = shared
        self.lease = lease
        self.send_id = send_id
        self.factory = factory
        self.smtp = smtp
        self.worker = worker or worker_id()
        self.on_progress = on_progress or (lambda done: None)
        helo = helo_name(smtp)
        self.connect = connect or (lambda: Connection(smtp, helo=helo))
        self.report = Report()
        self.pacer = Pacer(smtp.rate)
        self.backoff = Backoff()
        self.retries = RetryQueue()
        self._ready: list[Claimed] = []
        self._outstanding = 0  # claimed and not finished: queued, in flight or waiting to retry
        self._exhausted = False
        self._departed: set[int] = set()  # claimed, but their reader has left since
        self._tries: dict[int, int] = {}  # delivery id -> temporary failures in this run
        self._claiming = asyncio.Lock()
        self._halt = asyncio.Event()
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event | None = None) -> Report:
        self._stop = stop or asyncio.Event()
        self.recorder = Recorder(self.log, asyncio.get_running_loop(), self.on_progress)
        renewing = asyncio.create_task(self._watch())
        try:
            await asyncio.gather(*(self._connection() for _ in range(self.smtp.connections)))
        finally:
            renewing.cancel()
            await self.recorder.close()
        await self._settle()
        self.report.stopped = self._stop.is_set() and not self.report.paused
        return self.report

    def _halted(self) -> bool:
        return self._stop.is_set() or self._halt.is_set()

    async def _settle(self) -> None:
        """Give back what was claimed and not sent; retry results the log refused."""
        unrecorded = self.recorder.unrecorded
        for wait in (0.0, 0.5, 1.0, 2.0):  # a database locked for a moment gets a few tries
            if not unrecorded:
                break
            await asyncio.sleep(wait)
            try:
                await asyncio.to_thread(self.log.record, unrecorded)
                unrecorded = []
            except Exception as exc:
                log.warning("delivery log still refuses writes: %s", exc)
        self.report.unrecorded = len(unrecorded)
        self.unrecorded = unrecorded
        try:
            await asyncio.to_thread(self.log.release, self.send_id, self.worker)
        except Exception as exc:  # the leases run out by themselves
            log.warning("could not release claims: %s", exc)

    async def _watch(self) -> None:
        """Keep the claims alive, notice who unsubscribed since they were claimed, say
        this process is alive, and (shared) notice a pause by another participant."""
        renewed = beaten = time.monotonic()
        await self._beat()
        while True:
            await asyncio.sleep(WATCH_EVERY)
            try:
                left = await self.recorder.call(self.log.departed, self.send_id, self.worker)
                self._departed |= left
                if time.monotonic() - renewed > self.lease / 3:
                    until = time.time() + self.lease
                    await self.recorder.call(self.log.renew, self.send_id, self.worker, until)
                    renewed = time.monotonic()
                if time.monotonic() - beaten > BEAT_EVERY:
                    await self._beat()
                    beaten = time.monotonic()
            except RecordError as exc:
                self._pause(str(exc))

    async def _beat(self) -> None:
        if self.book is None:
            return
        await self.recorder.call(self.book.beat, self.worker, self.send_id)
        if self.shared:
            state = await self.recorder.call(self.book.state, self.send_id)
            if state not in (SendState.sending, SendState.done):
                self._pause(f"the send was {state.value if state else 'removed'} elsewhere")

    async def _next(self) -> Claimed | None:
        """The next delivery to send: a due retry, a queued claim, or a fresh claim."""
        while not self._halted():
            if (due := self.retries.pop_due()) is not None:
                return due
            if self._ready:
                return self._ready.pop()
            if not self._exhausted:
                await self._claim()
                continue
            if self._outstanding == 0:
                return None
            await asyncio.sleep(self.retries.wait_time())
        return None

    async def _claim(self) -> None:
        async with self._claiming:
            if self._ready or self._exhausted:
                return  # another connection claimed while this one waited
            args = (self.send_id, self.worker, self._batch(), time.time() + self.lease)
            try:
                claimed = await self.recorder.call(self.log.claim, *args)
                if not claimed and await self._others_at_work():
                    await asyncio.sleep(SHARED_POLL)  # their leases may run out: look again
                    return
            except RecordError as exc:
                self._pause(str(exc))
                return
            self._exhausted = not claimed
            self._outstanding += len(claimed)
            self._ready = claimed[::-1]  # popped from the end: id order

    def _batch(self) -> int:
        """A batch others can share: a throttled sender that claimed 500 would keep the
        rest of the list from workers that could send it meanwhile."""
        if not self.smtp.rate:
            return CLAIM_BATCH
        worth = int(self.smtp.rate * CLAIM_SECONDS)
        return max(self.smtp.connections * 2, min(CLAIM_BATCH, worth))

    async def _others_at_work(self) -> bool:
        """A shared send is over for this process only when nobody holds any of it: a
        participant that dies leaves claims that become free when its lease runs out."""
        if not (self.shared and self.book):
            return False
        return bool(await self.recorder.call(self.book.held_elsewhere, self.send_id, self.worker))

    async def _connection(self) -> None:
        connection: Connection | None = None
        used = 0.0
        recorded: asyncio.Future | None = None
        try:
            while (item := await self._next()) is not None:
                try:
                    connection, used, recorded = await self._deliver(
                        item, connection, used, recorded
                    )
                except RecordError as exc:
                    self._outstanding -= 1  # left pending for the next run
                    self._pause(str(exc))
                except Exception as exc:  # never hang and never lose a delivery over a surprise
                    log.exception("unexpected error sending to %s", item.email)
                    self._outstanding -= 1  # left pending for the next run
                    self._pause(f"unexpected error ({exc.__class__.__name__}: {exc})")
        finally:
            if connection is not None:
                await connection.close()
            if recorded is not None:
                await asyncio.wait([recorded])

    async def _deliver(
        self, item: Claimed, connection: Connection | None, used: float, recorded
    ) -> tuple[Connection | None, float, asyncio.Future | None]:
        loop = asyncio.get_running_loop()
        if item.delivery_id in self._departed:
            left = self._done(item, DeliveryState.skipped, DEPARTED, attempts=item.attempts)
            return connection, used, left
        await self.pacer.wait()  # first: the wait is idle time too
        if connection is not None and loop.time() - used > IDLE_REOPEN:
            await connection.close()  # servers drop idle clients; reopening costs no attempt
            connection = None
        if connection is None:
            connection = await self._open()
            if connection is None:
                self.retries.push(item, self.backoff.delay())  # no attempt counted
                return None, 0.0, recorded
        try:
            data, message_id = await self.factory.build_async(
                Recipient(item.subscriber_id, item.email, item.name)
            )
        except (MessageError, UnicodeError, ValueError) as exc:
            failed = self._done(
                item, DeliveryState.failed, f"not sent: {exc}", attempts=item.attempts
            )
            return connection, used, failed
        try:
            stage, reply = await connection.send(
                self.factory.envelope_sender(item), item.email, data, wire_ready=True, gate=recorded
            )
        except TransportError as exc:
            self._connection_failed(str(exc))
            return None, 0.0, self._retry(item, str(exc))  # it may be this message it chokes on
        return connection, loop.time(), self._classify(item, stage, reply, message_id)

    async def _open(self) -> Connection | None:
        connection = self.connect()
        try:
            await connection.open()
            return connection
        except AuthError as exc:
            self._pause(str(exc))
        except TransportError as exc:
            self._connection_failed(str(exc))
            await asyncio.sleep(self.backoff.delay())
        return None

    def _connection_failed(self, reason: str) -> None:
        self.backoff.failed()
        if self.backoff.streak >= self.smtp.pause_after:
            self._pause(f"{self.backoff.streak} connection failures in a row (last: {reason})")

    def _pause(self, reason: str) -> None:
        if not self.report.paused:
            self.report.paused = reason
        self._halt.set()

    def _classify(self, item: Claimed, stage: str, reply: Reply, message_id: str):
        if reply.ok:
            self.backoff.succeeded()
            return self._done(item, DeliveryState.sent, str(reply), message_id)
        if reply.transient or stage == "mail":
            # A refused MAIL FROM is the sender's problem, not this recipient's.
            if stage == "mail":
                self._connection_failed(str(reply))
            else:
                self.backoff.succeeded()
            return self._retry(item, str(reply))
        self.backoff.succeeded()
        state = DeliveryState.bounced if stage == "rcpt" else DeliveryState.failed
        return self._done(item, state, str(reply))

    def _done(
        self,
        item: Claimed,
        state: DeliveryState,
        reply: str,
        message_id: str | None = None,
        *,
        attempts: int | None = None,
    ) -> asyncio.Future:
        """A final result; `attempts` defaults to this one counted."""
        self._outstanding -= 1
        setattr(self.report, state.value, getattr(self.report, state.value) + 1)
        mid = message_id if state == DeliveryState.sent else None
        attempts = item.attempts + 1 if attempts is None else attempts
        return self.recorder.submit(
            Result(item.delivery_id, item.subscriber_id, state, attempts, reply, mid, self.worker)
        )

    def _retry(self, item: Claimed, reason: str) -> asyncio.Future:
        # The log counts every attempt ever made; the limit counts this run's.
        attempts = item.attempts + 1
        tries = self._tries[item.delivery_id] = self._tries.get(item.delivery_id, 0) + 1
        if tries >= self.smtp.max_attempts:
            self._tries.pop(item.delivery_id)
            return self._done(item, DeliveryState.failed, reason, attempts=attempts)
        again = Claimed(item.delivery_id, item.subscriber_id, item.email, item.name, attempts)
        self.retries.push(again, self.smtp.retry_delay * 2 ** (tries - 1))
        return self.recorder.submit(
            Result(item.delivery_id, item.subscriber_id, DeliveryState.pending, attempts, reason)
        )
