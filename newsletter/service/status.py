"""What `newsletter status` shows: each send's counts, and one send's problems;
scheduled sends with their time in the newsletter's zone, and late ones."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from newsletter.compose.issue import IssueError
from newsletter.config import Config
from newsletter.service.schedule import shown
from newsletter.storage import db
from newsletter.storage.delivery_log import DeliveryLog, SendRecord
from newsletter.storage.models import DeliveryState, SendState

PROBLEMS_SHOWN = 50


class NotSent(IssueError):
    """`status` of an issue that has no send."""


@dataclass(frozen=True)
class SendStatus:
    record: SendRecord
    counts: dict[DeliveryState, int]
    problems: list[tuple[str, str, int, str]]
    due: str | None = None  # a scheduled send's time, as the editor reads it
    overdue: bool = False  # its time has passed and no worker has started it yet

    @property
    def waiting(self) -> bool:
        return self.record.state in (SendState.scheduled, SendState.late)

    @property
    def late(self) -> bool:
        return self.record.state == SendState.late


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


def one_send(settings: Config, slug: str, as_typed: str) -> SendStatus:
    log = DeliveryLog(db.connect(settings))
    record = log.find(slug)
    if record is None:
        raise NotSent(f"{slug}: has not been sent; send it with 'newsletter send {as_typed}'")
    return _status(settings, log, record, PROBLEMS_SHOWN)
