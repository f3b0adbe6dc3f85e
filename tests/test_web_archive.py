"""The archive as a website: each issue's page kept with its send, only finished sends
public, the way between issues, link previews, and the Atom feed in full. Real sends
through a real SMTP server, real SQLite, the app through FastAPI's TestClient."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from xml.etree import ElementTree as ET

import pytest
from conftest import FULL_ISSUE, MINIMAL_ISSUE, use_smtp
from fastapi.testclient import TestClient
from smtp_server import SmtpServer, free_port
from sqlalchemy import update

from newsletter.config import load_config
from newsletter.storage import db
from newsletter.storage.models import Send
from newsletter.web import create_app

pytestmark = pytest.mark.usefixtures("backend")

SAMPLE = "2026-11-24-survival-of-the-fittest-funnel"  # made by `newsletter init`
SHORT = "2026-12-01-short-one"  # no preheader
FLIP = "2026-12-08-b2b-flip-flop"
ATOM = "{http://www.w3.org/2005/Atom}"


class Parsed(HTMLParser):
    """What a page says about itself: meta tags, headings, landmarks, links, forms."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        values = {k: v or "" for k, v in attrs}
        self.tags.append((tag, values))
        if tag == "meta" and ("property" in values or "name" in values):
            self.meta[values.get("property") or values["name"]] = values.get("content", "")

    def count(self, tag: str) -> int:
        return sum(1 for t, _ in self.tags if t == tag)

    def rel(self, rel: str) -> str | None:
        return next((a["href"] for t, a in self.tags if t == "a" and a.get("rel") == rel), None)


@pytest.fixture
def send(cli, folder, smtp, write_issue):
    use_smtp(folder, smtp.port)
    assert cli("subscribers", "add", "ana@example.com", "--name", "Ana").exit_code == 0
    write_issue(MINIMAL_ISSUE, f"{SHORT}.md")
    write_issue(FULL_ISSUE.replace("date: 2026-11-24", "date: 2026-12-08"), f"{FLIP}.md")

    def run(slug: str, code: int = 0):
        result = cli("send", f"issues/{slug}.md", "--yes")
        assert result.exit_code == code, result.output + result.stderr
        return result

    return run


@pytest.fixture
def client(folder):
    config = load_config(folder / "newsletter.toml", environ={})
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def three(send):
    """Three sent issues, sent out of date order: the archive orders them by their dates."""
    for slug in (FLIP, SAMPLE, SHORT):
        send(slug)


def sends_table(folder, **values) -> None:
    """Change every send row, as an older version of the program would have left it."""
    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:
        s.execute(update(Send).values(**values))


def test_an_issue_page_is_a_web_page_not_the_email(three, client):
    page = client.get(f"/archive/{SAMPLE}")
    assert page.status_code == 200
    text = page.text.lower()
    for email_only in ("in your browser", "hi there", "view online", "unsubscribe?", "token="):
        assert email_only not in text
    parsed = Parsed(page.text)
    assert parsed.count("h1") == 1 and parsed.count("main") == 1
    assert "<h1>Survival of the Fittest Funnel</h1>" in page.text
    assert '<time datetime="2026-11-24">November 24, 2026</time>' in page.text
    for section in (
        "On this date in 1859",
        "Theme song of the week",
        "<h2>The Quote Darwin Never Said</h2>",
        "What the experts are saying",
        "Theodore Levitt",
        "As always, hit reply",
        "Looking forward,",
    ):
        assert section in page.text
    (form,) = [a for t, a in parsed.tags if t == "form"]
    assert form["action"] == "https://news.example.com/subscribe"
    assert form["method"] == "post" and 'name="email"' in page.text
    assert "Ana" not in page.text


def test_previous_and_next_issues_follow_the_issue_dates(three, client):
    def links(slug):
        parsed = Parsed(client.get(f"/archive/{slug}").text)
        all_issues = any(a.get("href", "").endswith("/archive") for t, a in parsed.tags)
        return parsed.rel("prev"), parsed.rel("next"), all_issues

    base = "https://news.example.com/archive/"
    assert links(SAMPLE) == (None, base + SHORT, True)
    assert links(SHORT) == (base + SAMPLE, base + FLIP, True)
    assert links(FLIP) == (base + SHORT, None, True)
    index = client.get("/archive").text
    assert index.index(FLIP) < index.index(SHORT) < index.index(SAMPLE)
    assert '<time datetime="2026-12-01">December 1, 2026</time>' in index
    assert ">Short One</a>" in index  # the issue's title, not the email's subject


def test_a_shared_link_previews_well(three, client):
    meta = Parsed(client.get(f"/archive/{FLIP}").text).meta
    assert meta["og:title"] == "B2B Flip-flop"
    assert meta["og:description"] == "Sales and marketing keep reversing course. Why?"
    assert meta["og:url"] == f"https://news.example.com/archive/{FLIP}"
    assert meta["og:type"] == "article"
    assert meta["article:published_time"] == "2026-12-08"
    assert meta["twitter:card"] == "summary"
    # No preheader: the first paragraph says what the issue is about.
    short = Parsed(client.get(f"/archive/{SHORT}").text).meta
    assert short["og:description"] == "Just one article this week."


def test_unfinished_and_unread_sends_are_nowhere(send, cli, folder, client, smtp):
    send(SAMPLE)
    use_smtp(folder, free_port())  # nothing listens: the send pauses
    send(SHORT, code=1)
    use_smtp(folder, smtp.port)
    smtp.handler.script("ana@example.com", 550)  # the only reader bounces: done, 0 sent
    assert "Done: 0 sent, 1 bounced" in send(FLIP, code=0).output
    for hidden in (SHORT, FLIP):
        assert client.get(f"/archive/{hidden}").status_code == 404
        assert hidden not in client.get("/archive").text
        assert hidden not in client.get("/feed.xml").text
        assert hidden not in client.get(f"/archive/{SAMPLE}").text
    assert SAMPLE in client.get("/archive").text


def test_a_resumed_send_appears_once_it_finishes(send, cli, folder, client):
    port = free_port()
    use_smtp(folder, port)
    send(SAMPLE, code=1)
    assert client.get(f"/archive/{SAMPLE}").status_code == 404  # paused
    with SmtpServer(port):
        send(SAMPLE)
    assert "<h1>Survival of the Fittest Funnel</h1>" in client.get(f"/archive/{SAMPLE}").text


def test_the_feed_is_atom_with_every_issue_in_full(three, client):
    answer = client.get("/feed.xml")
    assert answer.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(answer.content)  # noqa: S314 (our own feed)
    assert feed.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated"):
        assert len(feed.findall(f"{ATOM}{required}")) == 1, required
    assert feed.find(f"{ATOM}author/{ATOM}name").text == "Dana Whitfield"
    self_link = feed.find(f"{ATOM}link[@rel='self']").get("href")
    assert self_link == "https://news.example.com/feed.xml"
    entries = feed.findall(f"{ATOM}entry")
    assert [e.find(f"{ATOM}title").text for e in entries] == [
        "B2B Flip-flop",
        "Short One",
        "Survival of the Fittest Funnel",
    ]
    assert len({e.find(f"{ATOM}id").text for e in entries}) == 3
    for entry, day in zip(entries, ("2026-12-08", "2026-12-01", "2026-11-24"), strict=True):
        for required in ("id", "title", "updated", "published"):
            assert len(entry.findall(f"{ATOM}{required}")) == 1, required
        for stamp in ("published", "updated"):
            moment = dt.datetime.fromisoformat(entry.find(f"{ATOM}{stamp}").text)
            assert moment.tzinfo is not None and moment.date().isoformat() == day
        url = entry.find(f"{ATOM}link[@rel='alternate']").get("href")
        assert url == entry.find(f"{ATOM}id").text and "/archive/2026-" in url
        content = entry.find(f"{ATOM}content")
        assert content.get("type") == "html" and "<h1>" in content.text
        assert "Hi there" not in content.text and "unsubscribe" not in content.text.lower()
    last = entries[2].find(f"{ATOM}content").text
    assert "<h2>The Quote Darwin Never Said</h2>" in last and "Theodore Levitt" in last
    assert dt.datetime.fromisoformat(feed.find(f"{ATOM}updated").text).tzinfo is not None


def test_a_send_made_before_pages_were_kept_still_has_its_page(send, folder, client):
    send(SAMPLE)
    send(SHORT)
    sends_table(folder, web_html=None, title=None, issue_date=None)
    page = client.get(f"/archive/{SAMPLE}")
    # As before: the email with no reader's data in it.
    assert page.status_code == 200 and "Hi there," in page.text and "Ana" not in page.text
    assert "token=" not in page.text
    index = client.get("/archive").text
    assert "The Pipeline Weekly: Survival of the Fittest Funnel" in index  # the subject
    assert f"{dt.date.today():%B %-d, %Y}" in index  # the day it was sent
    feed = ET.fromstring(client.get("/feed.xml").content)  # noqa: S314 (our own feed)
    short, sample = [c.text for c in feed.iter(f"{ATOM}content")]
    assert "Just one article this week." in short and "The Quote Darwin Never Said" in sample
    toml = folder / "newsletter.toml"
    toml.write_text(toml.read_text().replace('fallback = "there"', 'fallback = "friend"'))
    with TestClient(create_app(load_config(toml, environ={}))) as friendly:
        assert "Hi friend," in friendly.get(f"/archive/{SAMPLE}").text  # the configured greeting


def test_resuming_an_older_send_keeps_its_page_from_then_on(send, folder, client):
    port = free_port()
    use_smtp(folder, port)
    send(SAMPLE, code=1)  # paused, then as if started by an older version
    sends_table(folder, web_html=None, title=None, issue_date=None)
    with SmtpServer(port):
        send(SAMPLE)
    assert "<h1>Survival of the Fittest Funnel</h1>" in client.get(f"/archive/{SAMPLE}").text


def test_a_web_page_template_that_asks_for_a_reader_is_refused_before_sending(send, folder, smtp):
    (folder / "templates" / "web").mkdir(parents=True, exist_ok=True)
    (folder / "templates" / "web" / "issue.html.j2").write_text(
        "<article>Hi {{ slot('name') }}</article>\n"
    )
    result = send(SAMPLE, code=1)
    assert "issue.html.j2:1: template error: slot('name') has no value on the web page" in (
        result.stderr
    )
    assert "Traceback" not in result.output + result.stderr
    assert smtp.handler.received == []


OLD_ARCHIVE = """\
{% extends "web/base.html.j2" %}
{% block content %}
<ul>{% for item in issues %}
<li><a href="{{ base_url }}/archive/{{ item.slug }}">{{ item.subject }}</a>
<time datetime="{{ item.started_at.date().isoformat() }}">{{ item.started_at.year }}</time></li>
{% endfor %}</ul>
{% endblock %}
"""


def test_templates_copied_by_an_earlier_init_still_serve_the_archive(three, folder, client):
    web = folder / "templates" / "web"
    (web / "archive.html.j2").write_text(OLD_ARCHIVE)
    base = (web / "base.html.j2").read_text()
    base = base.replace("{% block head %}{% endblock %}\n", "")
    base = base.replace(
        "{% block masthead %}<h1>{{ newsletter.name }}</h1>{% endblock %}", "<h1>x</h1>"
    )
    (web / "base.html.j2").write_text(base)
    index = client.get("/archive")
    assert index.status_code == 200
    assert "The Pipeline Weekly: Survival of the Fittest Funnel" in index.text
    page = client.get(f"/archive/{SAMPLE}")
    assert page.status_code == 200 and "<h1>Survival of the Fittest Funnel</h1>" in page.text
