"""The send runner. It depends on two narrow things: the delivery log (claims
and results, through the Recorder's writer thread) and a transport
`Connection`; messages come from a `MessageFactory`.

Each relay (service/relays.py: [[smtp.relays]], or [smtp] alone) has its own
connection tasks, pace and failure count; every task keeps one SMTP connection
open and takes work from the one shared queue of claimed deliveries, so a relay
that rests takes no work and the others carry on. 2xx: sent. 4xx, 552 or a
dropped connection: retried with backoff (through any relay), then failed
([smtp] max_attempts tries per delivery in each run: a resumed or retried send
gives everyone left fresh tries). 5xx for a recipient: bounced. Whoever left the
list since the send started: skipped. A relay that keeps refusing rests; when
every relay does, the send pauses. Before a connection sends the next message's
data, the previous result on that connection has been committed: a crash resends
at most one message per connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.config import SmtpSection
from newsletter.mail.message import MessageError, MessageFactory, Recipient
from newsletter.mail.transport import AuthError, Connection, Reply, TransportError, helo_name
from newsletter.service.pacing import RetryQueue
from newsletter.service.recorder import Recorder, RecordError
from newsletter.service.relays import REST_POLL, RelayPool, Route
from newsletter.service.watching import Watching
from newsletter.storage.delivery_log import DEPARTED, Claimed, DeliveryLog, Result
from newsletter.storage.models import DeliveryState
from newsletter.storage.relays import COOLING, OK
from newsletter.storage.workers import WorkerBook

CLAIM_BATCH = 500  # deliveries per claim, at most
CLAIM_SECONDS = 2.0  # a throttled sender claims about this long's worth of work
LEASE = 60.0  # seconds a claim holds; renewed while the runner works
SHARED_POLL = 1.0  # seconds between looks at a shared send others still work on
IDLE_REOPEN = 15.0  # seconds a connection may idle before it is reopened instead of reused
log = logging.getLogger("newsletter.runner")


def worker_id() -> str:
    """This process's name in claims and in the workers table: one per process (a
    worker joining a send again is the same worker), new after a fork."""
    pid = os.getpid()
    if _IDS.get("pid") != pid:
        _IDS.update(pid=pid, id=f"{socket.gethostname()[:60]}:{pid}:{uuid.uuid4().hex[:8]}")
    return _IDS["id"]


_IDS: dict = {}


@dataclass
class Report:
    sent: int = 0
    bounced: int = 0
    failed: int = 0
    skipped: int = 0
    stopped: bool = False
    paused: str | None = None
    elsewhere: bool = False  # paused because another process paused the send
    unrecorded: int = 0  # results the log refused: their messages may go out again


class Runner(Watching):
    def __init__(
        self,
        log: DeliveryLog,
        send_id: int,
        factory: MessageFactory,
        smtp: SmtpSection,
        *,
        on_progress: Callable[[int], None] | None = None,
        already: int = 0,
        connect: Callable[[SmtpSection], Connection] | None = None,
        worker: str | None = None,
        participants: Callable[[], int] = lambda: 1,
        book: WorkerBook | None = None,
        shared: bool = False,
        stay: bool = False,
        lease: float = LEASE,
    ) -> None:
        """`participants` counts the processes sending this send: each paces every
        relay at rate / participants (see service/relays.py). `book` notes this process
        in the workers table. `shared`: others may work on the same send (PostgreSQL),
        and a pause by any of them stops this one too; `stay`: running out of claims is
        not the end while others hold deliveries (their leases may run out)."""
        self.log = log
        self.book = book
        self.shared = shared
        self.stay = stay
        self.lease = lease
        self.send_id = send_id
        self.factory = factory
        self.smtp = smtp
        self.worker = worker or worker_id()
        self.on_progress = on_progress or (lambda done: None)
        self.watched = on_progress is not None  # someone follows the progress
        helo = helo_name(smtp)
        self.connect = connect or (lambda settings: Connection(settings, helo=helo))
        self.participants = participants
        self.report = Report()
        self.pool = RelayPool(smtp)
        self.retries = RetryQueue()
        self._ready: list[Claimed] = []
        self._outstanding = 0  # claimed and not finished: queued, in flight or waiting to retry
        self._exhausted = False
        self._departed: set[int] = set()  # claimed, but their reader has left since
        self._tries: dict[int, int] = {}  # delivery id -> temporary failures in this run
        self._mine = 0  # results this process recorded
        self._already = already  # finished before the progress began
        self._others = 0  # results of other processes counted in the progress
        self._claiming = asyncio.Lock()
        self._halt = asyncio.Event()
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event | None = None) -> Report:
        self._stop = stop or asyncio.Event()
        self.recorder = Recorder(self.log, asyncio.get_running_loop(), self._progress)
        await self._refresh()
        renewing = asyncio.create_task(self._watch())
        tasks = [self._connection(r) for r in self.pool.routes for _ in range(r.connections)]
        try:
            async with self.factory.signing():
                await asyncio.gather(*tasks)
        finally:
            renewing.cancel()
            await self.recorder.close()
        if self.shared:  # others' last results, since the last look
            await self._count_others()
        await self._settle()
        self.report.stopped = self._stop.is_set() and not self.report.paused
        return self.report

    def _progress(self, finished: int) -> None:
        self._mine += finished
        self.on_progress(finished)

    def _halted(self) -> bool:
        return self._stop.is_set() or self._halt.is_set()

    def _finished(self) -> bool:
        return self._exhausted and self._outstanding == 0

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

    async def _rested(self, route: Route) -> bool:
        """Wait out the relay's rest; False when the send ended meanwhile."""
        while route.cooling:
            if self._halted() or self._finished():
                return False
            await asyncio.sleep(min(route.rest_left(), REST_POLL))
        return True

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
            args = (self.send_id, self.worker, self._batch(), self.lease)
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
        routes = self.pool.routes
        if any(not r.rate for r in routes):
            return CLAIM_BATCH
        worth = int(sum(r.rate for r in routes) / self.pool.participants * CLAIM_SECONDS)
        return max(sum(r.connections for r in routes) * 2, min(CLAIM_BATCH, worth))

    async def _connection(self, route: Route) -> None:
        connection: Connection | None = None
        used = 0.0
        recorded: asyncio.Future | None = None
        try:
            while True:
                if route.cooling and connection is not None:
                    await connection.close()  # it rests: no idle connection held open
                    connection = None
                if not await self._rested(route) or (item := await self._next()) is None:
                    break
                try:
                    connection, used, recorded = await self._deliver(
                        route, item, connection, used, recorded
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
        self, route: Route, item: Claimed, connection: Connection | None, used: float, recorded
    ) -> tuple[Connection | None, float, asyncio.Future | None]:
        loop = asyncio.get_running_loop()
        if item.delivery_id in self._departed:
            left = self._done(item, DeliveryState.skipped, DEPARTED, attempts=item.attempts)
            return connection, used, left
        await route.pacer.wait()  # first: the wait is idle time too
        if route.cooling:  # it began to rest meanwhile: another relay takes the message
            self.retries.push(item, 0.0)
            return connection, used, recorded
        if connection is not None and loop.time() - used > IDLE_REOPEN:
            await connection.close()  # servers drop idle clients; reopening costs no attempt
            connection = None
        if connection is None:
            connection = await self._open(route)
            if connection is None:  # no attempt counted; another relay may take it
                self.retries.push(item, 0.0 if route.cooling else route.backoff.delay())
                await asyncio.sleep(route.backoff.delay())
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
            self._connection_failed(route, str(exc))
            # It may be this message the relay chokes on.
            return None, 0.0, self._retry(item, str(exc), route.name)
        return connection, loop.time(), self._classify(route, item, stage, reply, message_id)

    async def _open(self, route: Route) -> Connection | None:
        connection = self.connect(route.settings)
        try:
            await connection.open()
            return connection
        except AuthError as exc:
            self._pause(str(exc))
        except TransportError as exc:
            self._connection_failed(route, str(exc))
        return None

    def _connection_failed(self, route: Route, reason: str) -> None:
        if (until := self.pool.failed(route)) is not None:
            log.warning("relay %s rests until %s: %s", route.name, time.ctime(until), reason)
            self._note(route, COOLING, until, reason)
        if self.pool.failing(self.smtp.pause_after):
            where = " on every relay" if len(self.pool.routes) > 1 else ""
            streak = route.backoff.streak
            self._pause(f"{streak} connection failures in a row{where} (last: {reason})")

    def _succeeded(self, route: Route) -> None:
        if self.pool.succeeded(route):
            self._note(route, OK, None, None)

    def _note(self, route: Route, state: str, until: float | None, error: str | None) -> None:
        """Write a relay's health for other senders; a refused write changes no message."""
        written = self.recorder.call(self.log.set_relay, route.name, state, until, error)
        written.add_done_callback(lambda f: f.cancelled() or _warn(f.exception()))

    def _pause(self, reason: str) -> None:
        if not self.report.paused:
            self.report.paused = reason
        self._halt.set()

    def _classify(self, route: Route, item: Claimed, stage: str, reply: Reply, message_id: str):
        if reply.ok:
            self._succeeded(route)
            return self._done(item, DeliveryState.sent, str(reply), message_id, relay=route.name)
        if reply.transient or stage == "mail":
            # A refused MAIL FROM is the sender's problem, not this recipient's.
            if stage == "mail":
                self._connection_failed(route, str(reply))
            else:
                self._succeeded(route)
            return self._retry(item, str(reply), route.name)
        self._succeeded(route)
        state = DeliveryState.bounced if stage == "rcpt" else DeliveryState.failed
        return self._done(item, state, str(reply), relay=route.name)

    def _done(
        self,
        item: Claimed,
        state: DeliveryState,
        reply: str,
        message_id: str | None = None,
        *,
        attempts: int | None = None,
        relay: str | None = None,
    ) -> asyncio.Future:
        """A final result; `attempts` defaults to this one counted."""
        self._outstanding -= 1
        setattr(self.report, state.value, getattr(self.report, state.value) + 1)
        mid = message_id if state == DeliveryState.sent else None
        attempts = item.attempts + 1 if attempts is None else attempts
        result = Result(
            item.delivery_id, item.subscriber_id, state, attempts, reply, mid, self.worker, relay
        )
        return self.recorder.submit(result)

    def _retry(self, item: Claimed, reason: str, relay: str) -> asyncio.Future:
        # The log counts every attempt ever made; the limit counts this run's.
        attempts = item.attempts + 1
        tries = self._tries[item.delivery_id] = self._tries.get(item.delivery_id, 0) + 1
        if tries >= self.smtp.max_attempts:
            self._tries.pop(item.delivery_id)
            return self._done(item, DeliveryState.failed, reason, attempts=attempts, relay=relay)
        again = Claimed(item.delivery_id, item.subscriber_id, item.email, item.name, attempts)
        self.retries.push(again, self.smtp.retry_delay * 2 ** (tries - 1))
        return self.recorder.submit(
            Result(
                item.delivery_id,
                item.subscriber_id,
                DeliveryState.pending,
                attempts,
                reason,
                worker=self.worker,
            )
        )


def _warn(exc: BaseException | None) -> None:
    if exc is not None:
        log.warning("could not write a relay's state: %s", exc)
