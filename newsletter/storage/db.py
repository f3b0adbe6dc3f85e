"""The database: SQLite (WAL) by default, PostgreSQL by URL; migrated on first use.

A SQLite file must exist before any command but `init` and `db upgrade` uses it,
so a typo'd path fails loudly instead of starting an empty list. Database
failures the editor can fix (read-only, locked, unreachable) reach callers as
DatabaseError subclasses carrying one sentence, whatever code path ran the SQL.
"""

from __future__ import annotations

import importlib.util
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, unquote

from sqlalchemy import Engine, Float, cast, create_engine, event, func, inspect, literal, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Config
from newsletter.errors import NewsletterError, shown

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision. Comparing with it spares every command
# importing Alembic (~170 ms); a test keeps it equal to the scripts' head.
HEAD = "0009"
BUSY_TIMEOUT_MS = 10_000
SQLITE_OVERFLOW = 64  # beyond the 5 pooled; the web serves 40 requests at once
# SQLite URI parameters (sqlite.org/uri.html). pysqlite honours them only with
# uri=true and otherwise drops them silently: `?mode=ro` would open read-write.
_SQLITE_URI_PARAMS = {"mode", "cache", "immutable", "nolock", "psow", "vfs", "modeof"}
_TRUE = ("true", "1", "yes", "on")


class DatabaseError(NewsletterError):
    """The database URL is wrong or the database cannot be reached."""


class DatabaseMissing(DatabaseError):
    """The SQLite file named by database.url does not exist (a typo, or never created)."""


class DatabaseUnavailable(DatabaseError, SQLAlchemyError):
    """The database exists but cannot be used now: unreachable, unreadable, or busy.

    Also a SQLAlchemyError, so code that pauses on any database error (the send
    runner) still pauses instead of crashing mid-send."""


class DatabaseReadOnly(DatabaseUnavailable):
    """The database refuses writes, or cannot be opened for them: file or folder
    permissions, mode=ro in the URL, a standby server."""


class DatabaseBusy(DatabaseUnavailable):
    """Another program held the SQLite write lock for longer than the busy timeout."""


def resolve_url(url: str, root: Path) -> str:
    """Relative SQLite paths live in the newsletter folder; postgresql:// uses psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"database.url: {url!r} is not a database URL; expected sqlite:///subscribers.db "
            "or postgresql://user@host/dbname"
        ) from None
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = _resolve_sqlite(parsed, root)
    elif parsed.drivername in ("postgresql", "postgres"):
        # psycopg is the optional [postgres] extra; without it SQLAlchemy would raise a
        # ModuleNotFoundError traceback from deep inside create_engine.
        if importlib.util.find_spec("psycopg") is None:
            raise DatabaseError(
                "database.url: PostgreSQL needs psycopg, which is not installed; install it "
                "with pip install 'newsletter[postgres]'"
            )
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _resolve_sqlite(parsed: URL, root: Path) -> URL:
    path = _sqlite_path(parsed)
    if path is None:
        return parsed
    if not path.is_absolute():
        path = root / path
    query = dict(parsed.query)
    if query.get("uri", "").lower() in _TRUE or _SQLITE_URI_PARAMS & set(query):
        query["uri"] = "true"
        return parsed.set(database="file:" + quote(str(path), safe="/"), query=query)
    return parsed.set(database=str(path))


def _sqlite_path(parsed: URL) -> Path | None:
    database = parsed.database or ""
    if database.startswith("file:") and (
        parsed.query.get("uri", "").lower() in _TRUE or _SQLITE_URI_PARAMS & set(parsed.query)
    ):
        if parsed.query.get("mode") == "memory":
            return None
        database = unquote(database.removeprefix("file:"))
        if database.startswith("//"):  # file://host/path: the path starts at the next /
            database = database[database.find("/", 2) :] if "/" in database[2:] else ""
    if database in ("", ":memory:"):
        return None
    return Path(database)


def sqlite_file(url: str) -> Path | None:
    """The file a resolved SQLite URL points at; None for PostgreSQL and in-memory ones."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    return _sqlite_path(parsed)


def connect(config: Config, *, migrate: bool = True, create: bool = False) -> Engine:
    """An engine for the configured database. A missing SQLite file is refused
    unless `create` (init and `db upgrade` create it)."""
    url = resolve_url(config.database.url, config.root)
    path = sqlite_file(url)
    if path is not None and not create and not path.exists():
        raise DatabaseMissing(
            f"database.url: {shown(path)} does not exist; run 'newsletter db upgrade' to "
            "create it, or fix [database] url"
        )
    # SQLite: a connection is an open file, and every web request waiting for the write
    # lock holds one; a pool smaller than the web's thread pool would make every other
    # page wait for them too.
    engine = create_engine(url, max_overflow=SQLITE_OVERFLOW) if path else create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    read_only_url = make_url(url).query.get("mode") == "ro"

    event.listen(
        engine,
        "handle_error",
        lambda context: _translated(context, path, read_only_url),
        retval=True,  # the returned error replaces SQLAlchemy's; None keeps it
    )

    if migrate:
        upgrade(engine)
    return engine


def _translated(context, path: Path | None, read_only_url: bool) -> DatabaseError | None:
    """The one-sentence error for a failure the editor can fix, or None to leave it be."""
    original = context.original_exception
    where_exists = path is not None and path.exists()
    where = shown(path) if path is not None else "the database"
    reason = (str(original).strip().splitlines() or [type(original).__name__])[0]
    if context.dialect.name == "sqlite":
        if not isinstance(context.sqlalchemy_exception, OperationalError):
            return None
        if "readonly" in reason:
            if read_only_url:
                return DatabaseReadOnly(
                    f"database.url: {where} is opened read-only (mode=ro); remove mode=ro "
                    "from [database] url to make changes"
                )
            return DatabaseReadOnly(
                f"database.url: {where} is read-only; check its permissions and its "
                "folder's (SQLite writes files beside it)"
            )
        if "unable to open" in reason:
            # An existing file that cannot be opened read-write (a read-only folder
            # as root, say) is a permissions problem like the one above.
            kind = DatabaseReadOnly if where_exists else DatabaseUnavailable
            return kind(
                f"database.url: cannot open {where} (unable to open database file); check "
                "its permissions and its folder's"
            )
        if "locked" in reason or "busy" in reason:
            return DatabaseBusy(
                f"database.url: {where} is busy (another program held it for over "
                f"{BUSY_TIMEOUT_MS / 1000:g} s); try again when that program is done"
            )
        return None
    if getattr(original, "sqlstate", None) == "25006":  # read_only_sql_transaction
        return DatabaseReadOnly(
            f"database.url: the database is read-only ({reason}); point [database] url "
            "at the primary server"
        )
    if isinstance(context.sqlalchemy_exception, OperationalError) and (
        context.connection is None or context.is_disconnect
    ):
        return DatabaseUnavailable(
            f"database.url: cannot open the database ({reason}); check the URL and that "
            "the server is running"
        )
    return None


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (status, the web side) run while a send or an import writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A writer waits this long for another's lock before failing with "database is locked".
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _alembic(connection):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine) -> bool:
    """Bring the schema to the newest revision; True when anything ran."""
    try:
        if current_revision(engine) == HEAD:
            return False
        from alembic import command

        with engine.begin() as connection:
            command.upgrade(_alembic(connection), "head")
        return True
    except DatabaseError:
        raise
    except OperationalError as exc:  # an engine made elsewhere, without the translation
        reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(
            f"database.url: cannot open the database ({reason}); check the URL and that "
            "the server is running"
        ) from None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def refusal(exc: BaseException) -> str | None:
    """Why the database refused ("read-only", "busy", "unavailable"), or None when the
    error is not the database's refusal (a bug of ours, say)."""
    if isinstance(exc, DatabaseReadOnly):
        return "read-only"
    if isinstance(exc, DatabaseBusy):
        return "busy"
    if isinstance(exc, DatabaseUnavailable):
        return "unavailable"
    return None


def write_problem(engine: Engine) -> str | None:
    """None when the database accepts a write now (for /healthz), else why not: a write,
    rolled back. The probe waits a moment for another writer's lock, not the full
    busy timeout."""
    try:
        with engine.connect() as connection:
            if engine.dialect.name != "sqlite":
                on = connection.exec_driver_sql("SHOW transaction_read_only").scalar()
                return "read-only" if on == "on" else None
            connection.exec_driver_sql("PRAGMA busy_timeout=200")
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                # BEGIN IMMEDIATE succeeds on a read-only file; only a write tells (and
                # one on our own table also tells a database that lacks it).
                connection.exec_driver_sql("UPDATE subscribers SET id = id WHERE 1 = 0")
            finally:
                connection.rollback()
                connection.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                connection.commit()
    except SQLAlchemyError as exc:
        return refusal(exc) or "unavailable"
    return None


def writable(engine: Engine) -> bool:
    """Whether writes can go ahead: a database another program is writing to counts,
    since its lock is released in moments."""
    return write_problem(engine) in (None, "busy")


@contextmanager
def session(engine: Engine):
    """One transaction: committed on success, rolled back on any error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as s:
        yield s


__all__ = [
    "DatabaseBusy",
    "DatabaseError",
    "DatabaseMissing",
    "DatabaseReadOnly",
    "DatabaseUnavailable",
    "Session",
    "connect",
    "current_revision",
    "refusal",
    "resolve_url",
    "session",
    "sqlite_file",
    "upgrade",
    "writable",
    "write_problem",
]


def epoch_now(engine: Engine):
    """Now in epoch seconds, by the database's clock, as SQL: hosts that share a send
    judge each other's leases by one clock, whatever their own clocks say."""
    if engine.dialect.name == "postgresql":
        return cast(func.extract("epoch", func.clock_timestamp()), Float)
    return literal(time.time(), Float)  # SQLite: one machine, one clock
