"""The archive of sent issues as web pages (the public fill, no reader's data)
and its Atom feed."""

from __future__ import annotations

import datetime as dt
from xml.etree import ElementTree as ET

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from newsletter.config import Config
from newsletter.links import Links
from newsletter.service import archive as service
from newsletter.web.deps import Context

router = APIRouter()


@router.api_route("/archive", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def archive(ctx: Context):
    return ctx.pages.page("archive", issues=service.published(ctx.engine))


@router.api_route("/archive/{slug}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def web_version(ctx: Context, slug: str):
    html = service.web_version(ctx.engine, slug[:100], ctx.config)
    if html is None:
        return ctx.pages.message(404, "Not found", "There is no issue here.")
    return ctx.pages.html(html)


@router.api_route("/feed.xml", methods=["GET", "HEAD"])
async def feed(ctx: Context):
    body = atom(ctx.config, ctx.links, service.published(ctx.engine))
    return Response(body, media_type="application/atom+xml", headers=ctx.pages.headers)


def atom(config: Config, links: Links, sends) -> bytes:
    ns = "http://www.w3.org/2005/Atom"
    feed = ET.Element("feed", xmlns=ns)
    ET.SubElement(feed, "title").text = config.newsletter.name
    ET.SubElement(feed, "subtitle").text = config.newsletter.tagline
    ET.SubElement(feed, "id").text = links.home()
    ET.SubElement(feed, "link", href=links.feed(), rel="self")
    ET.SubElement(feed, "link", href=links.archive())
    updated = max((s.started_at for s in sends), default=None)
    ET.SubElement(feed, "updated").text = _rfc3339(updated or dt.datetime.now(dt.UTC))
    author = ET.SubElement(feed, "author")
    ET.SubElement(author, "name").text = config.sender.from_name
    for send in sends:
        entry = ET.SubElement(feed, "entry")
        url = links.web(send.slug)
        ET.SubElement(entry, "title").text = send.subject
        ET.SubElement(entry, "id").text = url
        ET.SubElement(entry, "link", href=url)
        ET.SubElement(entry, "updated").text = _rfc3339(send.started_at)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _rfc3339(moment) -> str:
    # SQLite hands back naive UTC datetimes, PostgreSQL aware ones.
    return moment.isoformat() if moment.tzinfo else moment.isoformat() + "Z"
