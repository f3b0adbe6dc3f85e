"""Phone and desktop screenshots of a rendered issue, with Debian's Chromium
driven by Playwright. Never downloads a browser: it uses the system one."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from newsletter.errors import NewsletterError

CHROMIUM = Path(os.environ.get("NEWSLETTER_CHROMIUM", "/usr/bin/chromium"))
WIDTHS = {"phone": 375, "desktop": 800}
# Chromium's own background traffic is refused on closed networks; these flags stop it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class BrowserMissing(NewsletterError):
    """No Chromium to take screenshots with."""


class PlaywrightMissing(NewsletterError):
    """Playwright is an optional extra: most installs never take a screenshot."""


def browser_available() -> bool:
    return CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)


@contextmanager
def browser():
    """A headless Chromium context with a fresh, temporary profile."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        raise PlaywrightMissing(
            "screenshots need Playwright, which is not installed; install it with "
            "pip install 'newsletter[screenshots]'"
        ) from None
    if not browser_available():
        raise BrowserMissing(
            f"{CHROMIUM}: Chromium is not installed; install it with "
            "'sudo apt-get install chromium' to take screenshots"
        )

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        try:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
            )
        except Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no reason given"
            raise BrowserMissing(
                f"{CHROMIUM}: Chromium did not start ({first}); check that it runs: "
                f"{CHROMIUM} --headless --version"
            ) from None
        try:
            yield context
        finally:
            context.close()


def take(html_file: Path, out_dir: Path, slug: str) -> dict[str, Path]:
    """Full-page screenshots at phone and desktop widths: {"phone": path, ...}."""
    shots: dict[str, Path] = {}
    with browser() as context:
        page = context.new_page()
        for label, width in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": 800})
            page.goto(html_file.resolve().as_uri())
            shots[label] = out_dir / f"{slug}-{label}.png"
            page.screenshot(path=str(shots[label]), full_page=True)
    return shots
