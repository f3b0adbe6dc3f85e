"""The email as mail clients and spam filters read it: headings, language, dark mode,
the hidden preheader, and what caniemail and SpamAssassin hold against HTML mail."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess

import lxml.html
import pytest
from conftest import FULL_ISSUE

from newsletter.compose.emails import prepare_email
from newsletter.compose.issue import load_issue
from newsletter.compose.render import prepare, public_fill
from newsletter.mail.message import MessageFactory, Recipient
from newsletter.tokens import Signer

EMAIL_VALUES = {
    "name": "Ana",
    "confirm_url": "https://news.example.com/confirm?token=T",
    "archive_url": "https://news.example.com/archive",
    "unsubscribe_url": "https://news.example.com/unsubscribe?token=T",
}


@pytest.fixture
def page(write_issue, config) -> str:
    return public_fill(prepare(load_issue(write_issue(FULL_ISSUE)), config), config).html


def email_page(config, kind: str) -> str:
    return prepare_email(config, kind).fill_values(EMAIL_VALUES).html


def headings(page: str) -> list[tuple[str, str]]:
    tree = lxml.html.fromstring(page)
    return [(h.tag, " ".join(h.text_content().split())) for h in tree.iter("h1", "h2", "h3")]


def test_issue_title_is_the_one_h1_and_sections_are_h2(page):
    assert headings(page) == [
        ("h1", "B2B Flip-flop"),
        ("h2", "On this date in 1839"),
        ("h2", "Theme song of the week"),
        ("h2", "The Flip and the Flop"),
        ("h2", "What’s in Your Junk Drawer?"),
        ("h2", "What the experts are saying"),
    ]


def test_headings_keep_the_look_of_the_text_they_replaced(page):
    tree = lxml.html.fromstring(page)
    styles = {
        h.text_content().strip(): (h.get("style") or "").replace(" ", "")
        for h in tree.iter("h1", "h2")
    }
    for title in ("B2B Flip-flop", "The Flip and the Flop"):
        for rule in ("margin:0", "font-size:26px", "line-height:1.25", "font-weight:bold"):
            assert rule in styles[title], (title, rule)
    assert "font-size:12px" in styles["Theme song of the week"]
    assert "font-weight:normal" in styles["Theme song of the week"]
    head = re.sub(r"\s", "", page.split("<body", 1)[0])
    assert ".headingh1,.headingh2{font-size:23px!important" in head  # phones


def test_html_element_has_the_newsletter_language(folder, write_issue):
    from newsletter.config import load_config

    toml = folder / "newsletter.toml"
    toml.write_text(toml.read_text().replace('language = "en"', 'language = "de"'))
    config = load_config(toml, environ={})
    page = public_fill(prepare(load_issue(write_issue(FULL_ISSUE)), config), config).html
    assert lxml.html.fromstring(page).get("lang") == "de"
    assert lxml.html.fromstring(email_page(config, "welcome")).get("lang") == "de"


@pytest.mark.parametrize("kind", ["issue", "confirm", "welcome"])
def test_dark_mode_is_declared_and_styled_in_the_head(page, config, kind):
    html = page if kind == "issue" else email_page(config, kind)
    head = lxml.html.fromstring(html).find("head")
    metas = {m.get("name"): m.get("content") for m in head.iter("meta")}
    assert metas["color-scheme"] == "light dark"
    assert metas["supported-color-schemes"] == "light dark"
    styles = " ".join(s.text_content() for s in head.iter("style"))
    dark = re.search(r"@media \(prefers-color-scheme: dark\) \{(.*)\}", styles, re.S)
    assert dark, styles
    assert re.search(r"\.card div[^{]*\{\s*color: #e8e6e3 !important", dark.group(1))
    # The classes the dark rules name are on the page.
    assert 'class="card"' in html and 'class="page"' in html and 'class="nl-body"' in html


@pytest.mark.parametrize("kind", ["issue", "confirm", "welcome"])
def test_nothing_caniemail_flags_and_a_main_landmark(page, config, kind):
    html = page if kind == "issue" else email_page(config, kind)
    assert "cursor:auto" not in html.replace(" ", "")
    assert 'target="_blank"' not in html
    tree = lxml.html.fromstring(html)
    assert tree.xpath("//a[@target]") == []
    (main,) = tree.xpath('//*[@role="main"]')
    assert main.xpath('./div[@role="article"]')  # the whole email is inside it
    assert tree.xpath("//h1")
    assert all(t.get("role") == "presentation" for t in tree.iter("table"))


def test_preheader_is_hidden_without_a_colour(page):
    tree = lxml.html.fromstring(page)
    body = tree.find("body")
    preheader = body[0]
    assert preheader.text_content().startswith("Sales and marketing keep reversing course. Why?")
    style = preheader.get("style").replace(" ", "")
    for rule in ("display:none", "max-height:0", "overflow:hidden", "mso-hide:all"):
        assert rule in style
    assert "color" not in style and "font-size" not in style


def sample_message(folder, config) -> bytes:
    issue = load_issue(next((folder / "issues").glob("*funnel.md")))
    factory = MessageFactory(
        prepare(issue, config),
        config,
        Signer("s" * 32),
        date=dt.datetime(2026, 11, 24, 7, 0, tzinfo=dt.UTC),
    )
    return factory.build(Recipient(1, "ana@example.com", "Ana Souza"))


def spamassassin() -> str:
    found = shutil.which("spamassassin")
    if found:
        return found
    reason = "spamassassin not found (apt-get install spamassassin)"
    if os.environ.get("NEWSLETTER_REQUIRE_SPAMASSASSIN"):
        pytest.fail(reason)
    pytest.skip(reason)


def test_spamassassin_scores_the_sample_issue_at_most_zero(folder, config, tmp_path):
    # -L: local tests only (no DNS blocklists, no network); HOME keeps its user
    # preferences file out of the real one.
    result = subprocess.run(
        [spamassassin(), "-L", "-t"],
        input=sample_message(folder, config),
        capture_output=True,
        env={**os.environ, "HOME": str(tmp_path)},
        timeout=120,
        check=False,
    )
    report = result.stdout.decode("utf-8", "replace")
    status = re.search(r"^X-Spam-Status: (.*(?:\n[ \t].*)*)", report, re.M)
    assert status, report[-2000:]
    fields = " ".join(status.group(1).split())
    score = float(re.search(r"score=(-?[\d.]+)", fields).group(1))
    assert "HTML_FONT_LOW_CONTRAST" not in fields
    assert score <= 0, fields
