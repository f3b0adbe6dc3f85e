"""The whole reader journey in a real browser: Debian's Chromium (Playwright) on a
phone-sized window, uvicorn serving on loopback, a real SMTP server catching mail."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from html import unescape

import pytest
from axe import violations
from conftest import require_browser, use_smtp
from sqlalchemy import select
from web_server import on_loopback, serving

from newsletter.config import load_config
from newsletter.devtools import screenshots
from newsletter.storage import db
from newsletter.storage.models import Status, Subscriber

pytestmark = pytest.mark.browser
ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"


@pytest.fixture
def live_site(folder, smtp):
    require_browser()
    port = on_loopback(folder)
    toml = folder / "newsletter.toml"
    use_smtp(folder, smtp.port)
    config = load_config(toml, environ={})
    with serving(config, port) as url:
        yield url, config


def wait_for_mail(smtp, count: int):
    deadline = time.monotonic() + 10
    while len(smtp.handler.received) < count:
        assert time.monotonic() < deadline, "no email arrived"
        time.sleep(0.02)
    return smtp.handler.received[count - 1]


def status_of(config, email) -> Status:
    with db.session(db.connect(config)) as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email == email))


def accessible(page) -> None:
    """axe-core finds no violation on the page open now."""
    assert violations(page) == [], page.url


def test_signup_confirm_receive_unsubscribe_and_resubscribe_on_a_phone(live_site, smtp):
    base, config = live_site
    with screenshots.browser() as context:
        page = context.new_page()
        page.set_viewport_size({"width": 375, "height": 740})
        page.goto(base + "/")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        accessible(page)
        page.fill("#email", "reader@example.com")
        page.fill("#name", "Rita Reader")
        page.click("button[type=submit]")
        page.wait_for_selector("text=Check your inbox")
        accessible(page)

        confirmation = wait_for_mail(smtp, 1).message
        text = confirmation.get_body(("plain",)).get_content()
        link = re.search(rf"{re.escape(base)}/confirm\?token=\S+", text).group(0)
        page.goto(link)  # what a mail scanner does too: it must confirm nobody
        page.wait_for_selector("text=r\u2022\u2022@example.com")
        assert status_of(config, "reader@example.com") == Status.pending
        accessible(page)
        page.click("text=Confirm my subscription")
        page.wait_for_selector("text=You're in!")
        assert status_of(config, "reader@example.com") == Status.active
        accessible(page)
        page.goto(link)  # clicked again: a page that says so, not an error
        page.wait_for_selector("text=You're already subscribed")

        # The editor sends the week's issue (a real CLI process: Playwright owns this loop).
        sent = subprocess.run(
            [sys.executable, "-m", "newsletter", "send", ISSUE, "--yes"],
            cwd=config.root,
            env={k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        issue = next(m for m in smtp.handler.received if "Funnel" in str(m.message["Subject"]))
        html = issue.message.get_body(("html",)).get_content()
        assert "Hi Rita," in html  # the greeting takes the first name typed at signup
        unsubscribe = re.search(r'href="([^"]*/unsubscribe\?token=[^"]+)"', html).group(1)
        page.goto(unescape(unsubscribe))
        assert status_of(config, "reader@example.com") == Status.active  # GET changed nothing
        accessible(page)
        page.click("button:has-text('Unsubscribe')")
        page.wait_for_selector("text=You're unsubscribed")
        assert status_of(config, "reader@example.com") == Status.unsubscribed
        accessible(page)
        page.click("button:has-text('Resubscribe')")
        page.wait_for_selector("text=You're back!")
        assert status_of(config, "reader@example.com") == Status.active
        accessible(page)
