"""Results the delivery log refused (disk full, database gone), kept in a small
file until the next run can write them, so that a message the server took is
not sent again on resume."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine

from newsletter.storage.delivery_log import DeliveryLog, Result
from newsletter.storage.models import DeliveryState

log = logging.getLogger("newsletter.journal")


def path_for(engine: Engine, slug: str) -> Path:
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return Path(f"{database}-send-{slug}.unrecorded")
    # A database server that refuses writes says nothing about this machine's disk.
    name = f"newsletter-{engine.url.host or 'local'}-{database}-{slug}.unrecorded"
    return Path(tempfile.gettempdir()) / name.replace("/", "_")


def save(engine: Engine, slug: str, results: Sequence[Result]) -> bool:
    """Append the results; False when even that fails (the disk is truly full)."""
    lines = "".join(
        json.dumps([r.delivery_id, r.subscriber_id, r.state.value, r.attempts, r.reply,
                    r.message_id]) + "\n"
        for r in results
    )  # fmt: skip
    try:
        with path_for(engine, slug).open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
        return True
    except OSError as exc:
        log.error("cannot keep %d unrecorded result(s): %s", len(results), exc)
        return False


def replay(delivery_log: DeliveryLog, slug: str) -> int:
    """Write what an earlier run could not; the file goes once the log has it."""
    path = path_for(delivery_log.engine, slug)
    if not path.exists():
        return 0
    results = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            did, sid, state, attempts, reply, mid = json.loads(line)
            results.append(Result(did, sid, DeliveryState(state), attempts, reply, mid))
        except (ValueError, TypeError):
            continue  # a line cut short when the disk filled up: its message may repeat
    delivery_log.record(results)
    path.unlink()
    return len(results)
