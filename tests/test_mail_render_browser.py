"""The email in Chromium, light and dark: readable text in both schemes, and no
accessibility violations axe-core can find."""

from __future__ import annotations

import base64

import pytest
from axe import violations
from conftest import FULL_ISSUE, require_browser

from newsletter.compose.emails import prepare_email
from newsletter.compose.issue import load_issue
from newsletter.compose.render import prepare, public_fill
from newsletter.devtools import screenshots

pytestmark = pytest.mark.browser

# Text colour against the first opaque background behind it, as WCAG defines contrast.
CONTRAST = """selector => {
    const rgb = c => c.match(/[\\d.]+/g).map(Number);
    const lum = ([r, g, b]) => {
        const f = v => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const el = document.querySelector(selector);
    let bg = el;
    while (bg && rgb(getComputedStyle(bg).backgroundColor)[3] === 0) bg = bg.parentElement;
    const back = bg ? rgb(getComputedStyle(bg).backgroundColor) : [255, 255, 255];
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(back)].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
}"""

# The most common pixel of a screenshot is its background; the pixel that contrasts
# most with it is the ink of the text drawn on it.
PIXELS = """async data => {
    const img = new Image();
    img.src = 'data:image/png;base64,' + data;
    await img.decode();
    const canvas = document.createElement('canvas');
    [canvas.width, canvas.height] = [img.width, img.height];
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, img.width, img.height).data;
    const counts = new Map();
    for (let i = 0; i < px.length; i += 4) {
        const key = (px[i] << 16) | (px[i + 1] << 8) | px[i + 2];
        counts.set(key, (counts.get(key) || 0) + 1);
    }
    const bgKey = [...counts.entries()].sort((x, y) => y[1] - x[1])[0][0];
    const lum = key => {
        const f = v => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        return 0.2126 * f(key >> 16) + 0.7152 * f((key >> 8) & 255) + 0.0722 * f(key & 255);
    };
    const bg = lum(bgKey);
    let best = 1;
    for (const key of counts.keys()) {
        const [a, b] = [lum(key), bg].sort((x, y) => y - x);
        best = Math.max(best, (a + 0.05) / (b + 0.05));
    }
    return {background: bg, contrast: best};
}"""

SAMPLES = [
    ".prose p",  # body text
    ".heading h2",  # an article heading
    ".label h2",  # a small coloured section label
    ".prose a",  # a link in the text
    ".page div",  # the footer's small print
    ".quote-text div div",  # a quote's author line
]


@pytest.fixture(scope="module")
def context():
    """One Chromium for the module: starting it costs more than the checks."""
    require_browser()
    with screenshots.browser() as context:
        yield context


@pytest.fixture
def browser_page(context):
    page = context.new_page()
    yield page
    page.close()


def open_issue(browser_page, folder, write_issue, config, scheme: str, width: int = 800):
    prepared = prepare(load_issue(write_issue(FULL_ISSUE)), config)
    path = folder / "build" / "issue.html"
    path.parent.mkdir(exist_ok=True)
    path.write_text(public_fill(prepared, config).html, encoding="utf-8")
    browser_page.emulate_media(color_scheme=scheme)
    browser_page.set_viewport_size({"width": width, "height": 800})
    browser_page.goto(path.as_uri())


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrasts_with_its_background_in_both_schemes(
    browser_page, folder, write_issue, config, scheme
):
    open_issue(browser_page, folder, write_issue, config, scheme)
    ratios = {s: browser_page.evaluate(CONTRAST, s) for s in SAMPLES}
    assert all(r >= 4.5 for r in ratios.values()), ratios
    card = browser_page.evaluate(
        "getComputedStyle(document.querySelector('.card > table')).backgroundColor"
    )
    assert card == ("rgb(255, 255, 255)" if scheme == "light" else "rgb(29, 32, 37)")


def test_dark_screenshot_is_dark_and_its_text_readable(
    browser_page, folder, write_issue, config, tmp_path
):
    open_issue(browser_page, folder, write_issue, config, "dark")
    full = browser_page.screenshot(path=str(tmp_path / "dark.png"), full_page=True)
    assert full.startswith(b"\x89PNG")
    shots = {
        "paragraph": browser_page.locator(".prose p").first.screenshot(),
        "heading": browser_page.locator(".heading h2").first.screenshot(),
        "footer": browser_page.locator(".page div").last.screenshot(),
    }
    browser_page.goto("about:blank")
    for name, png in shots.items():
        found = browser_page.evaluate(PIXELS, base64.b64encode(png).decode())
        assert found["background"] < 0.05, (name, found)  # a dark background
        assert found["contrast"] >= 4.5, (name, found)


def test_headings_look_as_before_on_desktop_and_phone(browser_page, folder, write_issue, config):
    size = "parseFloat(getComputedStyle(document.querySelector('{}')).fontSize)"
    open_issue(browser_page, folder, write_issue, config, "light")
    assert browser_page.evaluate(size.format(".heading h1")) == 26
    assert browser_page.evaluate(size.format(".heading h2")) == 26
    assert browser_page.evaluate(size.format(".label h2")) == 12
    open_issue(browser_page, folder, write_issue, config, "light", width=375)
    assert browser_page.evaluate(size.format(".heading h2")) == 23


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_issue_email_has_no_axe_violations(browser_page, folder, write_issue, config, scheme):
    open_issue(browser_page, folder, write_issue, config, scheme)
    assert violations(browser_page) == []


@pytest.mark.parametrize("kind", ["confirm", "welcome"])
def test_transactional_emails_have_no_axe_violations(browser_page, folder, config, kind):
    values = {
        "name": "Ana",
        "confirm_url": "https://news.example.com/confirm?token=T",
        "archive_url": "https://news.example.com/archive",
        "unsubscribe_url": "https://news.example.com/unsubscribe?token=T",
    }
    path = folder / "build" / f"{kind}.html"
    path.parent.mkdir(exist_ok=True)
    path.write_text(prepare_email(config, kind).fill_values(values).html, encoding="utf-8")
    for scheme in ("light", "dark"):
        browser_page.emulate_media(color_scheme=scheme)
        browser_page.goto(path.as_uri())
        assert violations(browser_page) == [], scheme
