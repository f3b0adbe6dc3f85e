"""The rendered email in a real browser: Debian's Chromium, driven by Playwright."""

from __future__ import annotations

import struct

import pytest
from conftest import FULL_ISSUE, require_browser

from newsletter.compose.issue import load_issue
from newsletter.compose.render import prepare, public_fill
from newsletter.devtools import screenshots

pytestmark = pytest.mark.browser


@pytest.fixture
def page():
    require_browser()
    with screenshots.browser() as context:
        yield context.new_page()


def write_page(folder, write_issue, config, text=FULL_ISSUE):
    prepared = prepare(load_issue(write_issue(text)), config)
    path = folder / "build" / "page.html"
    path.parent.mkdir(exist_ok=True)
    path.write_text(public_fill(prepared, config).html, encoding="utf-8")
    return path.as_uri()


COLUMN_BOXES = """() => [...document.querySelectorAll('[class*="mj-column-per-50"]')]
    .map(el => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.width]; })"""


def test_phone_width_is_one_column_without_horizontal_scrolling(page, folder, write_issue, config):
    page.set_viewport_size({"width": 375, "height": 700})
    page.goto(write_page(folder, write_issue, config))
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    (left1, top1, width1), (left2, top2, width2) = page.evaluate(COLUMN_BOXES)
    assert left1 == left2 and top2 > top1  # stacked
    assert width1 > 300 and width2 > 300
    font = page.evaluate(
        "parseFloat(getComputedStyle(document.querySelector('.prose div')).fontSize)"
    )
    assert font >= 18  # the phone @media rule survived inlining and applies


def test_desktop_width_puts_the_week_side_by_side(page, folder, write_issue, config):
    page.set_viewport_size({"width": 800, "height": 700})
    page.goto(write_page(folder, write_issue, config))
    (left1, top1, _), (left2, top2, _) = page.evaluate(COLUMN_BOXES)
    assert top1 == top2 and left2 > left1
    assert page.evaluate("document.compatMode") == "CSS1Compat"  # standards mode


def test_script_in_fields_is_shown_as_text_and_never_runs(page, folder, write_issue, config):
    hostile = FULL_ISSUE.replace(
        "title: B2B Flip-flop", "title: \"<script>window.__ran = 'title'</script>\""
    ).replace("author: Seth Godin", "author: <img src=x onerror=\"window.__ran='author'\">")
    page.goto(write_page(folder, write_issue, config, hostile))
    assert page.evaluate("window.__ran") is None
    assert "<script>window.__ran = 'title'</script>" in page.inner_text("body")


def png_width(path) -> int:
    return struct.unpack(">I", path.read_bytes()[16:20])[0]


def test_preview_screenshots_at_phone_and_desktop_widths(cli, folder):
    require_browser()
    result = cli("preview", "issues/2026-11-24-survival-of-the-fittest-funnel.md", "--screenshots")
    assert result.exit_code == 0, result.output
    slug = "2026-11-24-survival-of-the-fittest-funnel"
    assert png_width(folder / "build" / f"{slug}-phone.png") == 375
    assert png_width(folder / "build" / f"{slug}-desktop.png") == 800
    assert f"Phone: build/{slug}-phone.png" in result.output
