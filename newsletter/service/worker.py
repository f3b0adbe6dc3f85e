"""The worker: one long-running process doing the unattended duties, each on its own
interval: start due scheduled sends, and whatever else is registered (delivering
the outbox of transactional mail, fetching the bounce mailbox).

A duty is a name, an interval and a function of the settings that returns one line
per thing it did. Duties run one after the other in the main thread; a duty that
fails is reported and tried again at its next turn, and never stops the others.

SIGTERM or SIGINT: the duty at work finishes what is in flight (a send stops after
the messages on the wire and records them), then the worker exits. `once` runs
every duty one time and returns (for cron and systemd timers).
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.service import bounces, outbox, schedule, sending, sharing

log = logging.getLogger("newsletter.worker")
NAP = 0.1  # seconds between looks at the stop flag while idle


@dataclass(frozen=True)
class Duty:
    name: str
    interval: Callable[[Config], float]  # seconds between two runs, from the settings
    run: Callable[[Config], list[str]]  # one line per thing done
    enabled: Callable[[Config], bool] = lambda settings: True


_REGISTRY: list[Duty] = []


def register(duty: Duty) -> Duty:
    """Add a duty every worker runs (the outbox and the bounce mailbox plug in here)."""
    if duty.name == "sends" or any(d.name == duty.name for d in _REGISTRY):
        raise ValueError(f"a duty named {duty.name!r} is registered already")
    _REGISTRY.append(duty)
    return duty


def unregister(name: str) -> None:
    _REGISTRY[:] = [d for d in _REGISTRY if d.name != name]


class Stop:
    """The stop flag, raised by SIGTERM or SIGINT."""

    def __init__(self) -> None:
        self.asked = False
        self._before: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.asked

    def set(self) -> None:
        if not self.asked:
            log.info("stopping after the work in hand")
        self.asked = True

    def listen(self) -> None:
        """(Re)install the handlers: a send installs its own and leaves the defaults."""
        for number in (signal.SIGTERM, signal.SIGINT):
            before = signal.signal(number, lambda *_: self.set())
            self._before.setdefault(number, before)

    def restore(self) -> None:
        """The handlers as they were before the worker listened."""
        for number, before in self._before.items():
            signal.signal(number, before)

    def nap(self, seconds: float) -> None:
        deadline = time.monotonic() + max(seconds, 0.0)
        while not self.asked and time.monotonic() < deadline:
            time.sleep(min(NAP, deadline - time.monotonic()))


def duties(settings: Config, stop: Stop) -> list[Duty]:
    """The built-in duties (due sends, and on PostgreSQL sends under way it can help
    with, which listen to the stop flag; confirmation and welcome mail waiting in the
    outbox; the bounce mailbox when one is configured) and the registered ones."""
    sends = Duty(
        "sends",
        lambda s: s.schedule.check_every.total_seconds(),
        lambda s: _sends(s, stop),
    )
    bounce_mail = Duty(
        "bounces",
        lambda s: s.bounces.fetch_every,
        lambda s: list(bounces.fetch(s)),
        enabled=lambda s: bool(s.bounces.maildir or s.bounces.imap_host),
    )
    mail = Duty("outbox", lambda s: s.web.outbox_interval, lambda s: outbox.deliver_due(s))
    return [d for d in (sends, mail, bounce_mail, *_REGISTRY) if d.enabled(settings)]


def _sends(settings: Config, stop: Stop) -> list[str]:
    """Due scheduled sends, then (PostgreSQL) sends under way this worker can help
    with; one engine for both, since the duty runs every few seconds."""
    log = sending.delivery_log(settings)
    try:
        lines = schedule.start_due(settings, stopped=stop, on_stopping=stop.set, log=log)
        return lines + sharing.join_all(settings, stopped=stop, on_stopping=stop.set, log=log)
    finally:
        log.engine.dispose()


def serve(
    settings: Config,
    *,
    once: bool = False,
    say: Callable[[str], None] = print,
    stop: Stop | None = None,
) -> int:
    """Run the duties until stopped (or once each); the number of duties that failed."""
    stop = stop or Stop()
    stop.listen()
    try:
        todo = duties(settings, stop)
        say(f"worker: {', '.join(d.name for d in todo)}" + (", once" if once else ""))
        failures = _loop(settings, todo, once, say, stop)
    finally:
        stop.restore()
    say("worker: stopped" if stop.asked else "worker: done")
    return failures


def _loop(settings: Config, todo: list[Duty], once: bool, say, stop: Stop) -> int:
    due = {d.name: 0.0 for d in todo}
    failures = 0
    while not stop.asked:
        for duty in todo:
            if stop.asked or due[duty.name] > time.monotonic():
                continue
            failures += not _turn(duty, settings, say)
            stop.listen()
            due[duty.name] = time.monotonic() + duty.interval(settings)
        if once:
            break
        stop.nap(min(due.values()) - time.monotonic())
    return failures


def _turn(duty: Duty, settings: Config, say: Callable[[str], None]) -> bool:
    """Run one duty, saying what it did; False when it failed."""
    try:
        lines = duty.run(settings)
    except NewsletterError as exc:
        say(f"{_now(settings)} {duty.name}: error: {exc}")
        return False
    except Exception as exc:  # a surprise in one duty must not stop the others
        log.exception("duty %s failed", duty.name)
        say(f"{_now(settings)} {duty.name}: error: {exc.__class__.__name__}: {exc}")
        return False
    for line in lines:
        say(f"{_now(settings)} {duty.name}: {line}")
    return True


def _now(settings: Config) -> str:
    return f"{dt.datetime.now(settings.newsletter.tzinfo):%Y-%m-%d %H:%M:%S}"
