"""What `newsletter status` shows: each send's counts, and one send's problems."""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.compose.issue import IssueError
from newsletter.config import Config
from newsletter.storage import db
from newsletter.storage.delivery_log import DeliveryLog, SendRecord
from newsletter.storage.models import DeliveryState

PROBLEMS_SHOWN = 50


@dataclass(frozen=True)
class SendStatus:
    record: SendRecord
    counts: dict[DeliveryState, int]
    problems: list[tuple[str, str, int, str]]


def all_sends(settings: Config) -> list[SendStatus]:
    log = DeliveryLog(db.connect(settings))
    return [SendStatus(r, log.counts(r.id), []) for r in log.sends()]


def one_send(settings: Config, slug: str, as_typed: str) -> SendStatus:
    log = DeliveryLog(db.connect(settings))
    record = log.find(slug)
    if record is None:
        raise IssueError(f"{slug}: has not been sent; send it with 'newsletter send {as_typed}'")
    return SendStatus(record, log.counts(record.id), log.problems(record.id, PROBLEMS_SHOWN))
