"""The delivery log's writer: one thread that owns every write of a send, so the
event loop never blocks on the database and each result is committed moments
after the server took the message.

Results that arrive while a commit runs are committed together in the next
one (a group commit), so commits keep up with any send rate. Each submitted
result gets a future that resolves when its transaction has committed; the
runner waits on it before the next message on that connection goes out.

SQLite is the exception: its commit is a few dozen microseconds of this
process's own CPU, less than handing the results to the thread costs (a
wake-up, the GIL passed back and forth, a wake-up back), so results are
committed on the event loop itself, once per turn of it. Claims and lease
renewals still go to the thread.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from newsletter.errors import NewsletterError
from newsletter.storage.delivery_log import DeliveryLog, Result
from newsletter.storage.models import DeliveryState
from newsletter.storage.result_writer import ResultWriter


class RecordError(NewsletterError):
    """The delivery log refused a write (disk full, database locked or gone)."""


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


_STOP = object()
# The writer speaks DB-API directly, so the drivers' own errors reach it unwrapped.
DBAPI_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)
try:
    import psycopg

    DBAPI_ERRORS += (psycopg.Error,)
except ImportError:  # the [postgres] extra is not installed
    pass


class Recorder:
    def __init__(
        self,
        log: DeliveryLog,
        loop: asyncio.AbstractEventLoop,
        on_recorded: Callable[[int], None] = lambda finished: None,
    ) -> None:
        self.log = log
        self.loop = loop
        self.on_recorded = on_recorded
        self.unrecorded: list[Result] = []  # results a failed commit left behind
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._outgoing: list[tuple[Result, asyncio.Future]] = []
        self._inline = log.engine.dialect.name == "sqlite"
        self._writer, self._broken = self._open_writer() if self._inline else (None, None)
        self._thread = threading.Thread(target=self._work, name="delivery-log", daemon=True)
        self._thread.start()

    def submit(self, result: Result) -> asyncio.Future:
        future = self.loop.create_future()
        # Marked as seen: a failure is reported through the runner's pause, once.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        # Handed over once per turn of the event loop, not once per result: waking the
        # writer thread costs more than queueing a result.
        if not self._outgoing:
            self.loop.call_soon(self._hand_over)
        self._outgoing.append((result, future))
        return future

    def _hand_over(self) -> None:
        batch, self._outgoing = self._outgoing, []
        if self._inline:
            self._commit(batch, self.loop.call_soon)
        else:
            self._queue.put(("batch", batch))

    def call(self, function: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Run another write (a claim, a lease renewal) in turn with the results."""
        future = self.loop.create_future()
        self._queue.put(((function, args), future))
        return future

    async def close(self) -> None:
        if self._outgoing:
            self._hand_over()
        self._queue.put((_STOP, None))
        await asyncio.to_thread(self._thread.join)
        if self._inline and self._writer is not None:
            self._writer.close()

    def _open_writer(self) -> tuple[ResultWriter | None, RecordError | None]:
        try:
            return self.log.writer(), None
        except SQLAlchemyError as exc:
            return None, RecordError(f"cannot open the delivery log ({first_line(exc)})")

    def _work(self) -> None:
        if not self._inline:
            self._writer, self._broken = self._open_writer()
        try:
            self._loop_until_stopped()
        finally:
            if not self._inline and self._writer is not None:
                self._writer.close()

    def _loop_until_stopped(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            results = [pair for kind, pairs in batch if kind == "batch" for pair in pairs]
            if results:
                self._commit(results, self.loop.call_soon_threadsafe)
            for item, future in batch:
                if item is _STOP:
                    return
                if isinstance(item, tuple):
                    self._run_call(item, future)

    def _commit(
        self, items: Sequence[tuple[Result, asyncio.Future]], call: Callable[..., Any]
    ) -> None:
        """Commit, then `call` (the loop's call_soon, thread-safe from the thread)
        settles the futures."""
        results = [r for r, _ in items]
        try:
            if self._writer is None:
                raise self._broken
            self._writer.record(results)
        except (DBAPIError, RecordError, *DBAPI_ERRORS) as exc:
            self.unrecorded.extend(results)
            error = (
                exc
                if isinstance(exc, RecordError)
                else RecordError(f"cannot write the delivery log ({first_line(exc)})")
            )
            call(_settle, [f for _, f in items], error)
            return
        finished = sum(r.state != DeliveryState.pending for r in results)
        call(_settle, [f for _, f in items], None)
        call(self.on_recorded, finished)

    def _run_call(self, item: tuple, future: asyncio.Future) -> None:
        function, args = item
        try:
            value = function(*args)
        except SQLAlchemyError as exc:
            error = RecordError(f"cannot use the delivery log ({first_line(exc)})")
            self.loop.call_soon_threadsafe(_settle_one, future, None, error)
        else:
            self.loop.call_soon_threadsafe(_settle_one, future, value, None)


def _settle(futures: list[asyncio.Future], error: BaseException | None) -> None:
    for future in futures:
        _settle_one(future, None, error)


def _settle_one(future: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
