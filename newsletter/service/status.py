"""What `newsletter status` shows: each send's counts, and one send's problems;
scheduled sends with their time in the newsletter's zone, and late ones."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field, replace

from newsletter.compose.issue import IssueError
from newsletter.config import Config
from newsletter.service.schedule import shown
from newsletter.storage import db
from newsletter.storage.delivery_log import DeliveryLog, SendRecord
from newsletter.storage.models import DeliveryState, SendState
from newsletter.storage.relays import COOLING, OK
from newsletter.storage.workers import WorkerBook, WorkerSeen

PROBLEMS_SHOWN = 50
RATE_WINDOW = 60.0  # seconds of results the throughput is measured over


class NotSent(IssueError):
    """`status` of an issue that has no send."""


@dataclass(frozen=True)
class SendStatus:
    record: SendRecord
    counts: dict[DeliveryState, int]
    problems: list[tuple[str, str, int, str]]
    due: str | None = None  # a scheduled send's time, as the editor reads it
    overdue: bool = False  # its time has passed and no worker has started it yet
    workers: list[WorkerSeen] = field(default_factory=list)
    relays: list[RelaySeen] = field(default_factory=list)
    rate: float = 0.0  # messages a second over the last minute

    @property
    def waiting(self) -> bool:
        return self.record.state in (SendState.scheduled, SendState.late)

    @property
    def late(self) -> bool:
        return self.record.state == SendState.late

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate; None when nothing moves."""
        pending = self.counts[DeliveryState.pending]
        if self.record.state != SendState.sending or not pending or not self.rate:
            return None
        return pending / self.rate

    def as_dict(self) -> dict:
        return {
            "slug": self.record.slug,
            "state": self.record.state.value,
            "total": self.record.total,
            "counts": {state.value: n for state, n in self.counts.items()},
            "rate": round(self.rate, 1),
            "eta_seconds": None if self.eta is None else round(self.eta),
            "workers": [_worker(w) for w in self.workers],
            "relays": [
                {"name": r.name, "sent": r.sent, "failed": r.failed, "state": r.state}
                for r in self.relays
            ],
        }


def _worker(w: WorkerSeen) -> dict:
    seen = w.last_seen.isoformat() if w.last_seen else None
    return {"id": w.id, "host": w.host, "pid": w.pid, "sent": w.sent, "failed": w.failed,
            "last_seen": seen}  # fmt: skip


@dataclass(frozen=True)
class RelaySeen:
    name: str
    sent: int
    failed: int
    state: str  # ok, cooling


def _status(settings: Config, log: DeliveryLog, record: SendRecord, problems: int) -> SendStatus:
    moment = record.scheduled_at
    return SendStatus(
        record,
        log.counts(record.id),
        log.problems(record.id, problems) if problems else [],
        shown(settings, moment) if moment else None,
        record.state == SendState.scheduled
        and moment is not None
        and moment < dt.datetime.now(dt.UTC),
    )


def all_sends(settings: Config) -> list[SendStatus]:
    log = DeliveryLog(db.connect(settings))
    return [_status(settings, log, r, 0) for r in log.sends()]


def _relays(settings: Config, log: DeliveryLog, tally: dict[str, tuple[int, int]]):
    """The configured relays and any other this send went through, each with what it
    took and refused, and whether a sender found it failing and rests it now."""
    health = log.relays()
    names = [r.name for r in settings.smtp.relay_list()]
    names += sorted(set(tally) - set(names))
    now = time.time()
    seen = []
    for name in names:
        known = health.get(name)
        resting = known and known.state == COOLING and (known.cool_until or 0) > now
        sent, failed = tally.get(name, (0, 0))
        seen.append(RelaySeen(name, sent, failed, COOLING if resting else OK))
    return seen


def one_send(settings: Config, slug: str, as_typed: str) -> SendStatus:
    """One send, with who works on it, through which relays, and how fast."""
    log = DeliveryLog(db.connect(settings))
    record = log.find(slug)
    if record is None:
        raise NotSent(f"{slug}: has not been sent; send it with 'newsletter send {as_typed}'")
    found = _status(settings, log, record, PROBLEMS_SHOWN)
    if not record.started:
        return found
    book = WorkerBook(log.engine)
    relays = _relays(settings, log, book.relay_tally(record.id))
    rate = book.sent_since(record.id, RATE_WINDOW) / RATE_WINDOW
    return replace(found, workers=book.of_send(record.id), relays=relays, rate=rate)
