"""The courier inside `newsletter serve`: a real uvicorn server on loopback answers
signups at once while the SMTP server is down, and delivers the confirmations,
each exactly once, as soon as it is back; a stopping server keeps what it could
not send in the outbox for the next start."""

from __future__ import annotations

import statistics
import threading
import time

import httpx
import pytest
import uvicorn
from conftest import use_smtp
from fastapi.testclient import TestClient
from smtp_server import SmtpServer, free_port
from sqlalchemy import select

from newsletter.config import load_config
from newsletter.storage import db
from newsletter.storage.models import Outbox, OutboxState
from newsletter.web import create_app

pytestmark = pytest.mark.usefixtures("backend")


def configure(folder, smtp_port: int, interval: float = 0.3):
    use_smtp(folder, smtp_port)
    toml = folder / "newsletter.toml"
    toml.write_text(toml.read_text() + f"\n[web]\noutbox_interval = {interval}\n")
    return load_config(toml, environ={})


def outbox(config) -> list[tuple[str, OutboxState, str | None]]:
    engine = db.connect(config)
    with db.session(engine) as s:
        found = [(r.email, r.state, r.last_reply) for r in s.scalars(select(Outbox))]
    engine.dispose()
    return found


def wait_until(condition, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


@pytest.fixture
def served(folder):
    """`newsletter serve`'s app under uvicorn on a loopback port, its SMTP server down."""
    smtp_port = free_port()
    config = configure(folder, smtp_port)
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=free_port(), log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "uvicorn did not start")
    yield config, smtp_port, f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    stopping = time.monotonic()
    thread.join(timeout=30)
    assert not thread.is_alive() and time.monotonic() - stopping < 10, "serve did not stop"


def test_serve_answers_at_once_with_smtp_down_and_mails_once_it_is_back(served):
    config, smtp_port, url = served
    emails = [f"reader{n}@example.com" for n in range(7)]
    times = []
    with httpx.Client(base_url=url) as client:
        client.get("/")  # the first request pays for the connection
        for email in emails:
            start = time.perf_counter()
            answer = client.post("/subscribe", data={"email": email})
            times.append(time.perf_counter() - start)
            assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert statistics.median(times) < 0.2, times
    # The courier tried, found nobody listening, and kept every mail.
    tried = wait_until(
        lambda: all(reply for *_, reply in outbox(config)) and outbox(config),
        "the courier never tried",
    )
    assert {(state, "cannot connect" in reply) for _, state, reply in tried} == {
        (OutboxState.pending, True)
    }
    with SmtpServer(smtp_port) as smtp:
        wait_until(lambda: len(smtp.handler.received) >= len(emails), "no confirmation arrived")
        time.sleep(1.0)  # a few more rounds: nothing goes out twice
        assert sorted(r.rcpt for r in smtp.handler.received) == sorted(emails)
    assert {state for _, state, _ in outbox(config)} == {OutboxState.sent}


def test_a_stopped_server_keeps_unsent_mail_and_the_next_start_sends_it(folder):
    smtp_port = free_port()
    config = configure(folder, smtp_port)
    with TestClient(create_app(config)) as client:
        assert client.post("/subscribe", data={"email": "ana@example.com"}).status_code == 200
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 3  # the refused connection is not waited out
    ((email, state, reply),) = outbox(config)
    assert (email, state) == ("ana@example.com", OutboxState.pending) and "cannot connect" in reply
    with SmtpServer(smtp_port) as smtp, TestClient(create_app(config)):
        (mail,) = wait_until(lambda: smtp.handler.received, "the next start did not send it")
    assert mail.rcpt == "ana@example.com"
    assert [state for _, state, _ in outbox(config)] == [OutboxState.sent]
