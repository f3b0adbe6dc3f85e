"""The database: SQLite (WAL) by default, PostgreSQL by URL; migrated on first use."""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Config
from newsletter.errors import NewsletterError

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision. Comparing with it spares every command
# importing Alembic (~170 ms); a test keeps it equal to the scripts' head.
HEAD = "0004"


class DatabaseError(NewsletterError):
    """The database URL is wrong or the database cannot be reached."""


def resolve_url(url: str, root: Path) -> str:
    """Relative SQLite paths live in the newsletter folder; postgresql:// uses psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"database.url: {url!r} is not a database URL; expected sqlite:///subscribers.db "
            "or postgresql://user@host/dbname"
        ) from None
    if parsed.drivername == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if not path.is_absolute():
            parsed = parsed.set(database=str(root / path))
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


def connect(config: Config, *, migrate: bool = True) -> Engine:
    url = resolve_url(config.database.url, config.root)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        upgrade(engine)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (status, the web side) run while a send writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
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
    except OperationalError as exc:
        reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
        raise DatabaseError(
            f"database.url: cannot open the database ({reason}); check the URL and that "
            "the server is running"
        ) from None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


@contextmanager
def session(engine: Engine):
    """One transaction: committed on success, rolled back on any error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as s:
        yield s


__all__ = ["DatabaseError", "Session", "connect", "resolve_url", "session", "upgrade"]
