"""Issue + config → the archive's web page of an issue: the same view the email is
built from, without the greeting, the unsubscribe footer or any reader's data.

It is rendered once, when a send starts, and kept with the send: the site then
shows what readers were sent even when the issue files are not deployed with it.
What is kept is the page's body (an `<article>`); the site wraps it in its own
layout, with the links to other issues that did not exist when it was sent.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass

from newsletter.compose import render
from newsletter.compose.content import Quote
from newsletter.compose.issue import Issue
from newsletter.compose.slots import SlotError
from newsletter.config import Config

TEMPLATE = "web/issue.html.j2"
DESCRIPTION_LIMIT = 200
# The description travels inside the kept body, as an attribute of its <article>
# (rendered autoescaped, so it holds no double quote).
_DESCRIPTION = re.compile(r'<article\b[^>]*\bdata-description="([^"]*)"')


@dataclass(frozen=True)
class WebPage:
    title: str
    date: dt.date
    description: str  # for link previews: the preheader, else the first paragraph
    html: str  # the body: one <article>, with the issue's title as its h1


def render_page(issue: Issue, config: Config) -> WebPage:
    view = render.issue_view(issue, config)
    description = issue.meta.preheader or first_paragraph(issue)
    body = render.render_template(
        render.environment(config.root),
        TEMPLATE,
        {**view, "description": description},
        config,
        _no_slots,
    )
    return WebPage(issue.meta.title, issue.meta.date, description, body.strip() + "\n")


def description_of(body: str) -> str:
    """The description kept in a page body rendered by `render_page` ("" when none)."""
    found = _DESCRIPTION.search(body)
    return html.unescape(found.group(1)) if found else ""


def first_paragraph(issue: Issue) -> str:
    """The first prose of the issue as plain text, shortened at a word for a preview."""
    blocks = [*issue.body.intro, *(b for a in issue.body.articles for b in a.blocks)]
    for block in blocks:
        if not isinstance(block, Quote):
            text = " ".join(block.html.striptags().split())
            if text:
                return shorten(text, DESCRIPTION_LIMIT)
    return ""


def shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:.—–-")
    return cut + "…"


def _no_slots(name: str) -> str:
    # The page is the same for every visitor: there is nobody's name or link to fill in.
    raise SlotError(f"slot({name!r}) has no value on the web page; remove it from {TEMPLATE}")
