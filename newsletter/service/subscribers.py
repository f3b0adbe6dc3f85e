"""What the editor does with the subscriber list; each function opens its own
database session, so callers (the CLI) know nothing of sessions or the ORM.

Imports commit in chunks, each its own transaction: a long import never holds
SQLite's write lock for more than a moment, so the signup form and a running
send keep writing in between.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from newsletter.config import Config
from newsletter.errors import NewsletterError, shown
from newsletter.service import csvfiles
from newsletter.storage import bounces, db, subscribers
from newsletter.storage.records import utc
from newsletter.storage.subscribers import ImportReport, SubscriberError

IMPORT_CHUNK = 500  # rows per transaction during an import


class ImportStopped(NewsletterError):
    """An import stopped part-way; the rows committed before the stop stay."""


@contextmanager
def _database(config: Config, *, create: bool = False):
    # Creating is upgrading: the caller runs (and reports) the migrations itself.
    engine = db.connect(config, create=create, migrate=not create)
    try:
        yield engine
    finally:
        engine.dispose()  # close the file now, not whenever the engine is collected


@contextmanager
def _session(config: Config):
    with _database(config) as engine, db.session(engine) as session:
        yield session


def upgrade_database(config: Config) -> bool:
    """Create the database, or bring its schema up to date; True when anything ran."""
    with _database(config, create=True) as engine:
        return db.upgrade(engine)


def add(
    config: Config,
    email: str,
    name: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
) -> str:
    """Add an active subscriber the editor vouches for; returns the stored address.
    Without first and last names, they are split from `name` (fields.split_name)."""
    with _session(config) as session:
        added = subscribers.add(session, email, name, first_name=first_name, last_name=last_name)
        return added.email


def remove(config: Config, email: str) -> str:
    """Unsubscribe someone; returns the stored address."""
    with _session(config) as session:
        return subscribers.remove(session, email).email


def listing(config: Config, status: str | None = None) -> Iterator[tuple[str, str, str]]:
    """(email, status, name) for each subscriber in the order they were added, streamed."""
    wanted = subscribers.parse_status(status) if status else None
    with _session(config) as session:
        for subscriber in subscribers.iterate(session, wanted):
            yield subscriber.email, subscriber.status.value, subscriber.name


def counts(config: Config) -> dict[str, int]:
    """How many subscribers have each status (every status, zeros included)."""
    with _session(config) as session:
        return {status.value: n for status, n in subscribers.counts(session).items()}


def show(config: Config, email: str) -> dict:
    """Everything held about one subscriber, as plain values, deliveries included."""
    with _session(config) as session:
        found = subscribers.find(session, email)
        if found is None:
            raise SubscriberError(f"{subscribers.normalize_email(email)}: is not on the list")
        record = subscribers.as_record(found)
        record["deliveries"] = subscribers.deliveries_of(session, found.id)
        # bounce_score and last_bounce_at are columns; the events say what they were.
        record["bounces"] = bounces.recent_events(session, found.id)
    return record


def erase(config: Config, email: str) -> str:
    """Delete everything held about a person but a hash; returns the address."""
    with _session(config) as session:
        return subscribers.erase(session, email)


def export_csv(config: Config, path: Path, status: str | None = None) -> int:
    """Write csvfiles.HEADER's columns to `path` ('-': standard output); the file
    imports back to the same names, statuses, dates, consent record and attributes."""
    wanted = subscribers.parse_status(status) if status else None
    with _session(config) as session:
        rows = (_exported(s) for s in subscribers.iterate(session, wanted))
        return csvfiles.write_rows(path, rows)


def _exported(s) -> list[str]:
    def when(value) -> str:
        return utc(value).isoformat() if value else ""  # alike from SQLite and PostgreSQL

    return [
        s.email, s.name, s.first_name or "", s.last_name or "", s.status.value,
        when(s.created_at), when(s.confirmed_at), when(s.consent_at),
        when(s.unsubscribed_at), s.consent_source or "", s.attributes or "",
    ]  # fmt: skip


def import_csv(config: Config, path: Path) -> ImportReport:
    """Import a CSV in chunks of IMPORT_CHUNK rows, each committed on its own.

    Invalid rows are skipped and listed in the report. If the file turns out to
    be broken, or the database fails, part-way, ImportStopped says where; the
    rows before that stay imported, and importing the file again is safe."""
    report = ImportReport()
    rows = csvfiles.read_rows(path, report)
    source = path.name
    with _database(config) as engine:
        while True:
            chunk, broken = _next_chunk(rows)
            if chunk:
                try:
                    with db.session(engine) as session:
                        done = subscribers.import_rows(session, [r.incoming for r in chunk], source)
                except NewsletterError as exc:
                    raise _stopped(path, exc, chunk[0].line, report) from None
                report.absorb(done)
                report.through_line = chunk[-1].line
            if broken is not None:
                raise _stopped(path, broken, broken.line, report) from None
            if len(chunk) < IMPORT_CHUNK:
                return report


def _next_chunk(rows: Iterator[csvfiles.Row]):
    """Up to IMPORT_CHUNK rows, and the file error that ended them early, if any."""
    chunk: list[csvfiles.Row] = []
    try:
        for row in itertools.islice(rows, IMPORT_CHUNK):
            chunk.append(row)
    except csvfiles.CsvFileError as exc:
        return chunk, exc
    return chunk, None


def _stopped(path: Path, cause: NewsletterError, line: int, report: ImportReport):
    if not report.through_line and not report.errors:
        return cause  # nothing was imported: the cause says all
    kept = (
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.kept_unsubscribed} kept unsubscribed or bounced from lines 2 to "
        f"{report.through_line}, which stay imported"
        if report.through_line
        else "nothing was imported"
    )
    return ImportStopped(
        str(cause),
        details=[
            str(cause),
            *report.errors,
            f"{shown(path)}: the import stopped at line {line}; {kept}; fix the problem "
            "and import the file again (that is safe: rows already imported are left "
            "as they are)",
        ],
    )
