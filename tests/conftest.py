"""Every test gets a real newsletter folder on a temp path, made by `newsletter init`."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from smtp_server import SmtpServer
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.compose import scaffold
from newsletter.config import Config, load_config
from newsletter.devtools import screenshots

FULL_ISSUE = """\
---
title: B2B Flip-flop
date: 2026-11-24
subject: "Flip, then flop: what B2B marketers do now"
preheader: Sales and marketing keep reversing course. Why?
on_this_date:
  year: 1839
  text: The daguerreotype process was announced to the world.
  link: https://en.wikipedia.org/wiki/Daguerreotype
theme_song:
  title: Learning to Fly
  artist: Tom Petty
  url: https://example.com/learning-to-fly
  note: A song about starting over, which is what the flop makes us do.
quotes:
  - text: The trap many people fall into is to allocate their time to whoever screams loudest.
    author: Clayton Christensen
    source: https://example.com/christensen
  - text: When you hustle a colleague or a friend, they can tell.
    author: Seth Godin
closing: |
  As always, call me to brainstorm or just say hello!
---

A short intro before the first article.

## The Flip and the Flop

Every January sales says the leads are not good enough. That's the flip.
Read [the whole story](https://example.com/story).

> Strategy is about making choices.
— Michael Porter

## What's in Your Junk Drawer?

Old phones, old drives, old media players: the drawer where tech goes to die.
"""

MINIMAL_ISSUE = """\
---
title: Short One
date: 2026-12-01
---

## Only Article

Just one article this week.
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "letter"
    scaffold.init(root)
    return root


@pytest.fixture
def config(folder: Path) -> Config:
    return load_config(folder / "newsletter.toml", environ={})


@pytest.fixture
def write_issue(folder: Path):
    def write(text: str | bytes, name: str = "2026-11-24-b2b-flip-flop.md") -> Path:
        path = folder / "issues" / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli(folder: Path, monkeypatch: pytest.MonkeyPatch):
    """Run the CLI in the newsletter folder, as the editor would."""
    monkeypatch.chdir(folder)
    for var in [v for v in os.environ if v.startswith("NEWSLETTER_")]:
        monkeypatch.delenv(var)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return run


# Where a PostgreSQL server is available (CI starts one), the storage tests run
# on it too: NEWSLETTER_TEST_POSTGRES_URL names a database we may create others from.
POSTGRES_URL = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"])
def backend(request, folder: Path):
    """Run the test on SQLite, and on a fresh PostgreSQL database when one is available."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"nl_test_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    toml = folder / "newsletter.toml"
    toml.write_text(toml.read_text().replace('url = "sqlite:///subscribers.db"', f'url = "{url}"'))
    yield "postgresql"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def smtp():
    """A scriptable SMTP server on a free loopback port."""
    with SmtpServer() as server:
        yield server


def use_smtp(folder: Path, port: int, **settings) -> None:
    """Point the folder's newsletter.toml at a test SMTP server, fast and retry-happy."""
    values = {
        "host": '"127.0.0.1"',
        "port": port,
        "security": '"none"',
        "connections": 2,
        "rate": 0,
        "retry_delay": 0.01,
        "max_attempts": 3,
        "pause_after": 3,
        **settings,
    }
    path = folder / "newsletter.toml"
    text = path.read_text()
    start = text.index("[smtp]")
    end = text.index("[database]")
    block = "[smtp]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
    path.write_text(text[:start] + block + text[end:])


def require_browser() -> None:
    """Skip without Chromium locally; in CI (NEWSLETTER_REQUIRE_BROWSER=1) fail instead."""
    if screenshots.browser_available():
        return
    reason = f"Chromium not found at {screenshots.CHROMIUM} (apt-get install chromium)"
    if os.environ.get("NEWSLETTER_REQUIRE_BROWSER"):
        pytest.fail(reason)
    pytest.skip(reason)
