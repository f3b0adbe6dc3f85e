"""The web app on a real uvicorn server on loopback, in a thread, for browser tests."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import uvicorn

from newsletter.web import create_app


@contextmanager
def serving(config, port: int):
    """Serve `config`'s site on 127.0.0.1:`port` until the block ends; yields its URL."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def on_loopback(folder) -> int:
    """Point the folder's base_url at a free loopback port (so the pages' links and
    form actions lead to the test server); returns the port."""
    from smtp_server import free_port

    port = free_port()
    toml = folder / "newsletter.toml"
    toml.write_text(
        toml.read_text().replace("https://news.example.com", f"http://127.0.0.1:{port}")
    )
    return port
