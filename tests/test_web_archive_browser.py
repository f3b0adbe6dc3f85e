"""The archive in a real browser (Debian's Chromium through Playwright, uvicorn on
loopback): axe-core finds no accessibility violation on the index or on an issue,
and a reader can walk from one issue to the next."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from axe import violations
from conftest import MINIMAL_ISSUE, require_browser, use_smtp
from web_server import on_loopback, serving

from newsletter.config import load_config
from newsletter.devtools import screenshots

pytestmark = pytest.mark.browser
SAMPLE = "2026-11-24-survival-of-the-fittest-funnel"
SHORT = "2026-12-01-short-one"


@pytest.fixture
def live_archive(folder, smtp, cli, write_issue):
    require_browser()
    port = on_loopback(folder)
    toml = folder / "newsletter.toml"
    use_smtp(folder, smtp.port)
    write_issue(MINIMAL_ISSUE, f"{SHORT}.md")
    assert cli("subscribers", "add", "ana@example.com").exit_code == 0
    for slug in (SAMPLE, SHORT):
        assert cli("send", f"issues/{slug}.md", "--yes").exit_code == 0
    config = load_config(toml, environ={})
    with serving(config, port) as url:
        yield url


@contextmanager
def chromium():
    """A browser whose pages accept axe-core's injected script despite the site's
    Content-Security-Policy (which allows no script at all)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(screenshots.CHROMIUM), args=screenshots.CHROMIUM_ARGS
        )
        try:
            yield browser.new_context(bypass_csp=True)
        finally:
            browser.close()


def test_the_archive_is_accessible_and_walkable(live_archive):
    with chromium() as context:
        page = context.new_page()
        page.set_viewport_size({"width": 375, "height": 740})
        page.goto(live_archive + "/archive")
        assert violations(page) == []
        assert page.locator("h1").count() == 1 and page.locator("main").count() == 1

        page.click("text=Survival of the Fittest Funnel")
        page.wait_for_url(f"**/archive/{SAMPLE}")
        assert violations(page) == []
        assert page.locator("h1").all_inner_texts() == ["Survival of the Fittest Funnel"]
        assert page.locator("main").count() == 1
        assert page.evaluate("document.documentElement.scrollWidth") <= 375

        page.click("a[rel=next]")
        page.wait_for_url(f"**/archive/{SHORT}")
        assert page.locator("h1").all_inner_texts() == ["Short One"]
        assert violations(page) == []
        page.click("text=All issues")
        page.wait_for_url("**/archive")
