"""Delivering the outbox: confirmation and welcome mails the web app wrote there.

`deliver_due` claims what is due, builds each message with the one MIME builder
(DKIM included) and sends the batch over one SMTP connection, recording each
result before the next message goes out. The rules of retrying:

- the server took it (2xx): sent;
- the server refused it for good (5xx): failed at once, never retried;
- the server refused it for now (4xx), the connection broke during it, or it could
  not be built: one attempt counted, tried again after `[smtp] retry_delay`
  doubling per attempt (at most an hour); after `[web] outbox_max_attempts`, failed;
- no connection at all (the server is down): not an attempt (the mail was never
  tried, so an outage of any length loses nothing), tried again after as long as
  it has waited so far (so the waits double while the outage lasts), at most an hour.

`Courier` is the thread inside `newsletter serve` that calls it every few seconds,
and soon after a request put something in the outbox.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from newsletter.config import Config
from newsletter.mail.transport import Connection, Reply, TransportError
from newsletter.service import notify
from newsletter.storage import db
from newsletter.storage.models import utcnow
from newsletter.storage.outbox import Item, OutboxLog

log = logging.getLogger("newsletter.outbox")

MAX_DELAY = dt.timedelta(hours=1)
# A claimed message is nobody else's for this long: longer than one message can take
# (the final reply alone may take ten minutes), and the batch stops taking new
# messages after a third of it.
LEASE = dt.timedelta(minutes=15)
# How long the courier waits after a wake-up before working: the request that woke it
# is still answering, and the reply must not wait on building the mail.
AFTER_REPLY = 0.05


def deliver_due(
    settings: Config, engine: Engine | None = None, limit: int = 50, *,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[str]:  # fmt: skip
    """Deliver up to `limit` due outbox messages; one line per message saying what
    happened. Runs its own event loop: call it from a thread that has none (from
    async code, through asyncio.to_thread). `should_stop` is asked before each
    message; what it leaves unsent is due again at once."""
    own = engine is None
    engine = engine or db.connect(settings)
    try:
        box = OutboxLog(engine)
        items = box.claim(limit, LEASE)
        if not items:
            return []
        return asyncio.run(_deliver(settings, box, items, should_stop))
    finally:
        if own:
            engine.dispose()


async def _deliver(
    settings: Config, box: OutboxLog, items: list[Item], should_stop: Callable[[], bool]
) -> list[str]:
    helo, sender = notify.envelope(settings)
    connection: Connection | None = None
    reports: list[str] = []
    deadline = time.monotonic() + LEASE.total_seconds() / 3
    try:
        for n, item in enumerate(items):
            if should_stop() or time.monotonic() > deadline:
                box.release(items[n:])
                break
            try:
                data = notify.build_email(
                    settings, item.kind, item.email, item.subscriber_id or 0, **item.values
                )
            except Exception as exc:  # a template or setting the editor can fix
                reports.append(_retry(settings, box, item, f"cannot be built: {exc}"))
                continue
            if connection is None:
                try:
                    connection = await _open(settings, helo)
                except TransportError as exc:
                    reports += [_outage(settings, box, rest, str(exc)) for rest in items[n:]]
                    break
            try:
                _, reply = await connection.send(sender, item.email, data)
            except TransportError as exc:  # send() closed the connection; the next reopens
                connection = None
                reports.append(_retry(settings, box, item, str(exc)))
                continue
            reports.append(_record(settings, box, item, reply))
    finally:
        if connection is not None:
            await connection.close()
    return reports


async def _open(settings: Config, helo: str) -> Connection:
    connection = Connection(settings.smtp.relay_list()[0].settings, helo=helo)
    await connection.open()
    return connection


def _record(settings: Config, box: OutboxLog, item: Item, reply: Reply) -> str:
    if reply.ok:
        box.sent(item, str(reply))
        return f"{_what(item)}: sent"
    if reply.transient:
        return _retry(settings, box, item, str(reply))
    box.failed(item, str(reply))
    return f"{_what(item)}: refused for good ({reply}); not retried"


def _retry(settings: Config, box: OutboxLog, item: Item, why: str) -> str:
    attempts = item.attempts + 1
    if attempts >= settings.web.outbox_max_attempts:
        box.failed(item, why)
        return f"{_what(item)}: given up after {attempts} attempts ({why})"
    delay = min(dt.timedelta(seconds=settings.smtp.retry_delay * 2 ** (attempts - 1)), MAX_DELAY)
    box.retry(item, why, utcnow() + delay, attempted=True)
    return f"{_what(item)}: tried {attempts} time(s), again in {_span(delay)} ({why})"


def _outage(settings: Config, box: OutboxLog, item: Item, why: str) -> str:
    now = utcnow()
    waited = now - item.created_at
    delay = min(max(dt.timedelta(seconds=settings.smtp.retry_delay), waited), MAX_DELAY)
    box.retry(item, why, now + delay, attempted=False)
    return f"{_what(item)}: not sent, again in {_span(delay)} ({why})"


def _what(item: Item) -> str:
    return f"{item.kind} mail to {item.email}"


def _span(delay: dt.timedelta) -> str:
    seconds = delay.total_seconds()
    return f"{seconds:.3g} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class Courier:
    """A thread that delivers the outbox every `interval` seconds, and `AFTER_REPLY`
    after each `wake()`. `stop()` lets it finish the message in hand and try once
    more; whatever is still unsent stays in the outbox for the next deliverer."""

    def __init__(self, settings: Config, engine: Engine, interval: float) -> None:
        self.settings = settings
        self.engine = engine
        self.interval = interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._hurry_after: float | None = None  # stop() is waiting: no new messages after
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Something was enqueued: deliver it soon. Safe from any thread."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop; a round still running after `timeout` seconds is left behind (a
        daemon thread): its claimed messages return to the outbox when the lease ends."""
        self._hurry_after = time.monotonic() + timeout / 2
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self._wake.wait(self.interval) and not self._stopping.is_set():
                time.sleep(AFTER_REPLY)
            self._wake.clear()
            while self._round() and not self._stopping.is_set():
                pass  # a full batch: more may be due
        self._round()  # the last one: what the last requests enqueued

    def _should_hurry(self) -> bool:
        return self._hurry_after is not None and time.monotonic() > self._hurry_after

    def _round(self, limit: int = 50) -> bool:
        """One delivery round; True when it filled a whole batch."""
        try:
            reports = deliver_due(self.settings, self.engine, limit, should_stop=self._should_hurry)
        except db.DatabaseError as exc:  # read-only, busy, unreachable: next round
            log.warning("outbox: %s", exc)
            return False
        except Exception:
            log.exception("outbox delivery failed")
            return False
        for line in reports:
            log.log(logging.INFO if line.endswith(": sent") else logging.WARNING, "%s", line)
        return len(reports) >= limit
