"""Signup rate limits live in the database: several apps (or `newsletter serve`
processes) on one database share them, a restart keeps them, and a database that
refuses the limiter's write gets the try-again-later page, not a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from conftest import use_smtp
from fastapi.testclient import TestClient
from smtp_server import free_port
from sqlalchemy import select
from sqlalchemy.engine import make_url
from web_server import serving

from newsletter.config import load_config
from newsletter.storage import db
from newsletter.storage.models import RateLimit
from newsletter.web import create_app

pytestmark = pytest.mark.usefixtures("backend")
TRY_LATER = "We can't take signups right now; please try again later."


@pytest.fixture
def settings(folder, smtp, backend):
    """Three signups a minute from one IP; the per-address limit out of the way."""
    use_smtp(folder, smtp.port)
    toml = folder / "newsletter.toml"
    toml.write_text(
        toml.read_text() + '\n[web]\nlimit_per_ip = "3/minute"\nlimit_per_address = "100/hour"\n'
    )
    return load_config(toml, environ={})


def signup(client, n: int) -> int:
    return client.post("/subscribe", data={"email": f"reader{n}@example.com"}).status_code


def test_two_apps_on_one_database_share_the_per_ip_limit(settings):
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        codes = [signup(client, n) for n, client in enumerate([one, two, one, two, one])]
    assert codes == [200, 200, 200, 429, 429]


def test_a_limit_survives_a_restart(settings):
    with TestClient(create_app(settings)) as before:
        assert [signup(before, n) for n in range(3)] == [200, 200, 200]
    with TestClient(create_app(settings)) as after:
        refused = after.post("/subscribe", data={"email": "late@example.com"})
    assert refused.status_code == 429 and "Too many tries" in refused.text


def wait_for(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "newsletter serve did not start"
        time.sleep(0.1)


def test_a_second_serve_process_shares_the_counts(settings, folder):
    """A real `newsletter serve` in another process and this process's server, both
    on loopback: the visitor has one IP, whichever server answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    command = [sys.executable, "-m", "newsletter", "serve", "--port", str(port)]
    other = subprocess.Popen(
        [*command, "--config", str(folder / "newsletter.toml")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}", other)
        with serving(settings, free_port()) as here:
            there = f"http://127.0.0.1:{port}"
            codes = [
                httpx.post(f"{url}/subscribe", data={"email": f"r{n}@example.com"}).status_code
                for n, url in enumerate([here, there, here, there, here])
            ]
    finally:
        other.terminate()
        other.communicate(timeout=30)
    assert codes == [200, 200, 200, 429, 429]


def test_the_table_never_holds_the_address_or_the_ip(settings):
    with TestClient(create_app(settings)) as client:
        assert signup(client, 7) == 200
    engine = db.connect(settings)
    with engine.connect() as connection:
        stored = connection.execute(select(RateLimit.key, RateLimit.hits)).all()
    engine.dispose()
    # The IP's, the address's, and the address's confirmation emails of the day.
    assert sorted(hits for _, hits in stored) == [1, 1, 1]
    for key, _ in stored:
        assert len(key) == 64 and "reader7" not in key and "testclient" not in key


def read_only(settings):
    """The same database, opened so that every write is refused, as on a read-only
    file or a standby server."""
    db.connect(settings).dispose()  # migrated first: a refused migration is another story
    url = make_url(db.resolve_url(settings.database.url, settings.root))
    if url.drivername.startswith("sqlite"):
        url = url.update_query_dict({"mode": "ro"})
    else:
        url = url.update_query_dict({"options": "-c default_transaction_read_only=on"})
    environ = {"NEWSLETTER_DATABASE_URL": url.render_as_string(hide_password=False)}
    return db.connect(load_config(settings.root / "newsletter.toml", environ=environ))


def test_a_database_refusing_the_limiters_write_is_try_again_later(settings):
    app = create_app(settings, engine=read_only(settings))
    with TestClient(app, raise_server_exceptions=False) as client:
        # The per-IP limit is the first write, before the form is even read.
        for fields in ({"email": "ana@example.com"}, {"email": "not an address"}):
            page = client.post("/subscribe", data=fields)
            assert page.status_code == 503, page.text
            assert TRY_LATER in page.text.replace("&#39;", "'")
            assert page.headers["retry-after"].isdigit()
            assert "Something went wrong" not in page.text
        as_json = client.post("/subscribe", json={"email": "ana@example.com"})
        assert (as_json.status_code, as_json.json()) == (503, {"error": TRY_LATER})
        assert client.get("/").status_code == 200  # pages that only read still work
