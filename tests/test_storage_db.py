"""The database file: missing, read-only, busy; each a one-line error, on every code path."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time

import pytest
from sqlalchemy import text

from newsletter.config import load_config
from newsletter.storage import db
from newsletter.web import create_app

MISSING = (
    "error: database.url: {path} does not exist; run 'newsletter db upgrade' to create it, "
    "or fix [database] url\n"
)


def settings(folder, url: str | None = None):
    return load_config(
        folder / "newsletter.toml", environ={"NEWSLETTER_DATABASE_URL": url} if url else {}
    )


@pytest.fixture
def read_only(request):
    """Make a file or folder read-only for this process: chmod, or for root (whom
    permissions do not stop) the immutable attribute; skip where neither works."""
    changed = []

    def make(path):
        if os.geteuid() != 0:
            path.chmod(0o555 if path.is_dir() else 0o444)
        elif subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("running as root without chattr +i: nothing can be made read-only")
        changed.append(path)

    yield make
    for path in changed:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_init_made_the_database_and_its_pragmas_are_set(config):
    engine = db.connect(config)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
    assert db.current_revision(engine) == db.HEAD
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///subscriber.db", "subscriber.db"),  # a typo
        ("sqlite:///subscriber.db?mode=ro", "subscriber.db"),
        ("sqlite:///file:elsewhere/subscribers.db?mode=rw&uri=true", "elsewhere/subscribers.db"),
    ],
)
def test_a_missing_database_file_is_refused_not_created(cli, folder, monkeypatch, url, shown):
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    for command in (["subscribers", "count"], ["subscribers", "add", "a@example.com"]):
        result = cli(*command)
        assert (result.exit_code, result.stdout) == (1, "")
        assert result.stderr == MISSING.format(path=shown)
    assert sorted(p.name for p in folder.glob("subscriber*")) == ["subscribers.db"]
    assert not (folder / "elsewhere").exists()


def test_db_upgrade_creates_a_missing_database(cli, folder):
    (folder / "subscribers.db").unlink()
    assert cli("subscribers", "count").stderr == MISSING.format(path="subscribers.db")
    assert cli("db", "upgrade").output == "Database upgraded.\n"
    assert cli("subscribers", "add", "ana@example.com").output == "Added ana@example.com.\n"


def test_the_web_app_refuses_a_missing_database_too(folder):
    (folder / "subscribers.db").unlink()
    with pytest.raises(db.DatabaseMissing, match=r"subscribers\.db does not exist"):
        create_app(settings(folder))
    assert not (folder / "subscribers.db").exists()


def test_a_mode_ro_url_opens_read_only_and_says_so(cli, folder, monkeypatch):
    cli("subscribers", "add", "ana@example.com")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "sqlite:///subscribers.db?mode=ro")
    assert cli("subscribers", "list").output == "ana@example.com\tactive\t\n"  # reads work
    result = cli("subscribers", "add", "bo@example.com")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "error: database.url: subscribers.db is opened read-only (mode=ro); remove mode=ro "
        "from [database] url to make changes\n"
    )
    monkeypatch.delenv("NEWSLETTER_DATABASE_URL")
    assert cli("subscribers", "list").output == "ana@example.com\tactive\t\n"


def test_a_read_only_file_is_one_line_naming_it(cli, folder, read_only):
    cli("subscribers", "add", "ana@example.com")
    read_only(folder / "subscribers.db")
    assert "active        1" in cli("subscribers", "count").output  # reading still works
    for command in (["add", "bo@example.com"], ["remove", "ana@example.com"]):
        result = cli("subscribers", *command)
        assert (result.exit_code, result.stdout) == (1, "")
        assert result.stderr == (
            "error: database.url: subscribers.db is read-only; check its permissions and "
            "its folder's (SQLite writes files beside it)\n"
        )


def test_a_read_only_folder_is_one_line_naming_the_file(cli, folder, read_only):
    read_only(folder)
    result = cli("subscribers", "add", "bo@example.com")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.startswith("error: database.url: ")
    assert "subscribers.db" in result.stderr and "check its permissions and its folder's" in (
        result.stderr
    )
    assert len(result.stderr.splitlines()) == 1


def test_read_only_errors_are_named_on_every_code_path(folder):
    engine = db.connect(settings(folder, "sqlite:///subscribers.db?mode=ro"))
    # Not only sessions: a bare connection (as the delivery log and /healthz use) too.
    with pytest.raises(db.DatabaseReadOnly) as caught, engine.begin() as conn:
        conn.execute(text("DELETE FROM subscribers"))
    # Still a SQLAlchemyError, so the send runner's pause-on-database-error holds.
    from sqlalchemy.exc import SQLAlchemyError

    assert isinstance(caught.value, SQLAlchemyError)
    assert isinstance(caught.value, db.DatabaseUnavailable)
    engine.dispose()


def test_writable_tells_a_read_only_database_from_a_writable_one(folder, read_only):
    engine = db.connect(settings(folder))
    assert db.writable(engine) is True
    ro = db.connect(settings(folder, "sqlite:///subscribers.db?mode=ro"))
    assert db.writable(ro) is False
    ro.dispose()
    engine.dispose()
    read_only(folder / "subscribers.db")
    engine = db.connect(settings(folder))
    assert db.writable(engine) is False
    engine.dispose()


def test_a_database_locked_too_long_is_one_line_and_still_counts_as_writable(
    cli, folder, monkeypatch
):
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 200)
    holder = sqlite3.connect(folder / "subscribers.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        started = time.monotonic()
        engine = db.connect(settings(folder))
        assert db.writable(engine) is True  # busy is not read-only
        assert time.monotonic() - started < 2
        engine.dispose()
        result = cli("subscribers", "add", "ana@example.com")
        assert (result.exit_code, result.stdout) == (1, "")
        assert result.stderr == (
            "error: database.url: subscribers.db is busy (another program held it for over "
            "0.2 s); try again when that program is done\n"
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert cli("subscribers", "add", "ana@example.com").exit_code == 0


def test_writable_and_read_only_on_the_configured_backend(folder, backend):
    engine = db.connect(settings(folder))
    assert db.writable(engine) is True
    if backend == "postgresql":
        with engine.connect() as conn:
            name = conn.execute(text("SELECT current_database()")).scalar()
            conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
            conn.commit()
        engine.dispose()  # new sessions get the setting
        assert db.writable(engine) is False
        refused = pytest.raises(db.DatabaseReadOnly, match=r"point \[database\] url at the primary")
        with refused, engine.begin() as conn:
            conn.execute(text("DELETE FROM subscribers"))
    engine.dispose()
