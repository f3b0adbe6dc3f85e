"""When the database will not take a write, every page that writes answers 503 with a
page saying to try again later (and Retry-After), and /healthz says so too; the pages
that only read keep working."""

from __future__ import annotations

import re
import sqlite3
import threading
import time

import httpx
import pytest
from conftest import use_smtp
from fastapi.testclient import TestClient
from smtp_server import free_port
from sqlalchemy import create_engine, event, select
from web_server import serving

from newsletter.config import load_config
from newsletter.storage import db
from newsletter.storage.models import Subscriber
from newsletter.tokens import Signer, secret_of
from newsletter.web import create_app

TRY_LATER = "We can't take signups right now; please try again later."


@pytest.fixture
def letter(folder, smtp, cli):
    """A newsletter with one active subscriber and one pending signup (its link)."""
    use_smtp(folder, smtp.port)
    assert cli("subscribers", "add", "ana@example.com").exit_code == 0
    config = load_config(folder / "newsletter.toml", environ={})
    with TestClient(create_app(config)) as client:
        assert client.post("/subscribe", data={"email": "bo@example.com"}).status_code == 200
        deadline = time.monotonic() + 10
        while not smtp.handler.received:
            assert time.monotonic() < deadline, "no confirmation email"
            time.sleep(0.01)
    text = smtp.handler.received[0].message.get_body(("plain",)).get_content()
    confirm = re.search(r"/confirm\?token=\S+", text).group(0)
    signer = Signer(secret_of(config))
    engine = db.connect(config)
    with db.session(engine) as s:
        ana = s.scalar(select(Subscriber.id).where(Subscriber.email == "ana@example.com"))
    engine.dispose()  # no connection of ours keeps the file open
    return config, confirm, f"/unsubscribe?token={signer.unsubscribe_token(ana, 'ana@example.com')}"


def read_only_app(config):
    path = config.root / "subscribers.db"
    path.chmod(0o444)
    # Tests run as root, and root writes through a 0444 file, so the chmod alone would
    # prove nothing here. mode=ro opens the file the way SQLite opens a file it may not
    # write (or one on a read-only mount): reads work, every write fails with "attempt
    # to write a readonly database", as it would for the server's own unprivileged user.
    read_only = load_config(
        config.root / "newsletter.toml",
        environ={"NEWSLETTER_DATABASE_URL": "sqlite:///subscribers.db?mode=ro"},
    )
    engine = db.connect(read_only)
    return TestClient(create_app(config, engine=engine), raise_server_exceptions=False)


def assert_try_later(response, text: str = TRY_LATER) -> None:
    assert response.status_code == 503, response.text
    assert text in response.text.replace("&#39;", "'")
    assert response.headers["retry-after"].isdigit()
    assert "Something went wrong" not in response.text and "Traceback" not in response.text


def test_a_read_only_database_gets_try_again_later_not_a_crash(letter, smtp):
    config, confirm, unsubscribe = letter
    with read_only_app(config) as client:
        assert_try_later(client.post("/subscribe", data={"email": "new@example.com"}))
        assert_try_later(client.post("/subscribe", data={"email": "ana@example.com"}))
        as_json = client.post("/subscribe", json={"email": "new@example.com"})
        assert as_json.status_code == 503 and as_json.json() == {"error": TRY_LATER}
        assert_try_later(client.post(confirm))  # the button's POST
        assert_try_later(
            client.post(unsubscribe),
            "We can't record your unsubscribe right now; please try again later.",
        )
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {"status": "error", "database": "read-only"}
        assert health.headers["retry-after"].isdigit()
        # Reading still works: the form, the confirm and unsubscribe buttons, the archive...
        for path in ("/", confirm, unsubscribe, "/archive", "/feed.xml"):
            assert client.get(path).status_code == 200, path
        time.sleep(0.2)
    assert len(smtp.handler.received) == 1  # no confirmation or welcome went out


def test_a_database_held_by_another_writer_is_busy(letter):
    config, confirm, _ = letter
    holder = sqlite3.connect(config.root / "subscribers.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # e.g. a long import holding the write lock
    try:
        # A short busy timeout stands in for the default 10 s one.
        engine = db.connect(config)
        event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout=100"))
        with TestClient(create_app(config, engine=engine)) as client:
            assert_try_later(client.post("/subscribe", data={"email": "new@example.com"}))
            assert_try_later(client.post(confirm))  # the button's POST
            health = client.get("/healthz")
            assert (health.status_code, health.json()["database"]) == (503, "busy")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_database_without_our_tables_is_a_crash_not_a_refusal(folder, tmp_path):
    config = load_config(folder / "newsletter.toml", environ={})
    empty = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # "no such table"
    with TestClient(create_app(config, engine=empty), raise_server_exceptions=False) as client:
        signup = client.post("/subscribe", data={"email": "new@example.com"})
        assert signup.status_code == 500 and "Something went wrong" in signup.text
        assert "retry-after" not in signup.headers
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {"status": "error", "database": "unavailable"}


def test_a_writable_database_is_healthy(config):
    with TestClient(create_app(config)) as client:
        health = client.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert "retry-after" not in health.headers


def test_a_write_waiting_for_the_lock_holds_up_no_other_page(letter):
    """Twenty unsubscribes (a burst of one-click POSTs) and a confirmation wait for
    another writer's lock (a send's results, an import); meanwhile the site keeps
    answering everyone else: more waiting writes than the database pool's default."""
    config, confirm, unsubscribe = letter
    holder = sqlite3.connect(config.root / "subscribers.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    locked_at, answers = time.monotonic(), {}
    with serving(config, free_port()) as url:

        def post(path: str, key: int) -> None:
            response = httpx.post(url + path, timeout=30)
            answers[key] = (response.status_code, time.monotonic() - locked_at)

        paths = [unsubscribe] * 20 + [confirm]
        waiting = [threading.Thread(target=post, args=(p, i)) for i, p in enumerate(paths)]
        for thread in waiting:
            thread.start()
        time.sleep(0.5)  # both wait for the lock by now
        started = time.monotonic()
        for path in ("/archive", "/feed.xml", unsubscribe, "/"):
            assert httpx.get(url + path, timeout=30).status_code == 200, path
        reading = time.monotonic() - started
        time.sleep(max(0.0, 2.0 - (time.monotonic() - locked_at)))
        holder.execute("ROLLBACK")
        holder.close()
        for thread in waiting:
            thread.join(15)
    assert reading < 1.0, f"the other pages took {reading:.1f} s"
    assert [status for status, _ in answers.values()] == [200] * len(paths)
    assert min(waited for _, waited in answers.values()) >= 2.0  # they did wait
