"""The archive of sent issues as web pages (each issue's page kept with its send,
no reader's data in it), and its Atom feed with every issue in full."""

from __future__ import annotations

import datetime as dt
from xml.etree import ElementTree as ET

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from newsletter.config import Config
from newsletter.links import Links
from newsletter.service import archive as service
from newsletter.web.deps import Context

router = APIRouter()


FEED_ENTRIES = 20  # the newest issues, in full; the archive keeps the rest
ATOM = "http://www.w3.org/2005/Atom"


@router.api_route("/archive", methods=["GET", "HEAD"], response_class=HTMLResponse)
def archive(ctx: Context):
    return ctx.pages.page("archive", issues=service.published(ctx.engine))


@router.api_route("/archive/{slug}", methods=["GET", "HEAD"], response_class=HTMLResponse)
def web_version(ctx: Context, slug: str):
    found = service.issue_page(ctx.engine, slug[:100])
    if found is None:
        return ctx.pages.message(404, "Not found", "There is no issue here.")
    if found.issue.body is None:
        return ctx.pages.html(service.email_version(found.issue, ctx.config))
    return ctx.pages.page(
        "archive_issue",
        page=found,
        url=ctx.links.web(slug),
        body=Markup(found.issue.body),  # noqa: S704 (rendered autoescaped by compose.webpage)
    )


@router.api_route("/feed.xml", methods=["GET", "HEAD"])
def feed(ctx: Context):
    issues = service.in_full(ctx.engine, service.published(ctx.engine)[:FEED_ENTRIES])
    body = atom(ctx.config, ctx.links, issues)
    return Response(body, media_type="application/atom+xml", headers=ctx.pages.headers)


def atom(config: Config, links: Links, issues: list[service.Kept]) -> bytes:
    """An Atom feed (RFC 4287) with each issue's page in full, dated by the issue."""
    feed = ET.Element("feed", xmlns=ATOM)
    ET.SubElement(feed, "title").text = config.newsletter.name
    if config.newsletter.tagline:
        ET.SubElement(feed, "subtitle").text = config.newsletter.tagline
    ET.SubElement(feed, "id").text = links.home()
    ET.SubElement(feed, "link", rel="self", type="application/atom+xml", href=links.feed())
    ET.SubElement(feed, "link", rel="alternate", type="text/html", href=links.archive())
    # The feed changed when an issue last went out, whatever date that issue carries.
    updated = max((_rfc3339(i.entry.finished_at) for i in issues), default=None)
    ET.SubElement(feed, "updated").text = updated or _rfc3339(dt.datetime.now(dt.UTC))
    author = ET.SubElement(feed, "author")
    ET.SubElement(author, "name").text = config.sender.from_name
    for issue in issues:
        feed.append(_entry(issue, links.web(issue.entry.slug), config))
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _entry(item: service.Kept, url: str, config: Config) -> ET.Element:
    entry = ET.Element("entry")
    ET.SubElement(entry, "title").text = item.entry.title
    ET.SubElement(entry, "id").text = url
    ET.SubElement(entry, "link", rel="alternate", type="text/html", href=url)
    dated = _rfc3339(dt.datetime.combine(item.entry.date, dt.time(), dt.UTC))
    ET.SubElement(entry, "published").text = dated
    ET.SubElement(entry, "updated").text = dated
    if item.description:
        ET.SubElement(entry, "summary").text = item.description
    body = item.body if item.body is not None else service.email_version(item, config)
    ET.SubElement(entry, "content", type="html").text = body
    return entry


def _rfc3339(moment: dt.datetime) -> str:
    # SQLite hands back naive UTC datetimes, PostgreSQL aware ones.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
