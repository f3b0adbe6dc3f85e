"""Joining sends other processes started: on PostgreSQL a worker takes part in
every send under way that has deliveries nobody holds, so a list outgrows one
machine by starting more workers, and a send whose sender died is finished by
the others once that sender's leases run out."""

from __future__ import annotations

from collections.abc import Callable

from newsletter.config import Config
from newsletter.service import sending
from newsletter.storage.delivery_log import DeliveryLog
from newsletter.storage.models import DeliveryState
from newsletter.storage.workers import WorkerBook


def join_all(
    settings: Config,
    *,
    stopped: Callable[[], bool] | None = None,
    on_stopping: Callable[[], None] | None = None,
    log: DeliveryLog | None = None,
) -> list[str]:
    """Help with each joinable send in turn; one line for each."""
    log = log or sending.delivery_log(settings)
    if not sending.shared(log):
        return []  # SQLite: one process sends an issue, holding its lock
    lines = []
    for slug in WorkerBook(log.engine).joinable():
        if stopped and stopped():
            break
        try:
            outcome = sending.join(settings, slug, stopped=stopped, on_stopping=on_stopping)
        except sending.NotDue:
            continue  # finished or paused meanwhile
        except sending.SettingsDiffer as exc:
            # Said each time the duty runs (every [schedule] check_every), not retried
            # meanwhile: the other sends go on, and the editor sees why this host idles.
            lines.append(f"not joined: {exc}")
            continue
        lines.append(_said(outcome))
    return lines


def _said(outcome: sending.Outcome) -> str:
    report, pending = outcome.report, outcome.counts[DeliveryState.pending]
    mine = f"{report.sent} sent here, {report.bounced} bounced, {report.failed} failed"
    if outcome.finished:
        return f"{outcome.slug}: helped to send: {mine}; the send is done"
    if report.paused:
        return f"{outcome.slug}: paused ({report.paused}): {mine}, {pending} to go"
    return f"{outcome.slug}: helped to send: {mine}; {pending} to go, left to the others"
