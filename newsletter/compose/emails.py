"""Transactional emails (confirmation, welcome): rendered from templates/emails/
like issues are (Jinja2 → MJML → inlined HTML, plus text), and sent through the
same SMTP transport. Low volume, so the plain stdlib message builder serves."""

from __future__ import annotations

import datetime as dt
import functools
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from html import escape
from pathlib import Path

from markupsafe import Markup

from newsletter.compose import render
from newsletter.config import Config, NewsletterSection
from newsletter.mail.transport import Connection, Reply

SUBJECTS = {
    "confirm": "Confirm your subscription to {name}",
    "welcome": "Welcome to {name}",
}


def build(config: Config, kind: str, to: str, **context: str) -> bytes:
    subject, html, text = _bodies(config.root, config.newsletter, kind, tuple(sorted(context)))
    for key, value in context.items():  # the link values are ours: signed URLs, numbers
        html = html.replace(_marker(key), escape(str(value)))
        text = text.replace(_marker(key), str(value))
    sender = config.sender
    message = EmailMessage(policy=policy.SMTP)  # CRLF line ends, as SMTP requires
    message["From"] = Address(sender.from_name, addr_spec=sender.from_address)
    message["To"] = to
    if sender.reply_to:
        message["Reply-To"] = sender.reply_to
    message["Subject"] = subject
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_msgid(domain=sender.from_address.rsplit("@", 1)[1])
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message.as_bytes()


@functools.lru_cache(maxsize=16)
def _bodies(
    root: Path, newsletter: NewsletterSection, kind: str, keys: tuple[str, ...]
) -> tuple[str, str, str]:
    """Render a kind of email once (MJML and CSS inlining cost milliseconds), with
    markers where each email's own values go."""
    env = render.environment(root)
    subject = SUBJECTS[kind].format(name=newsletter.name)
    values = {"newsletter": newsletter, "subject": subject}
    values |= {key: Markup(_marker(key)) for key in keys}  # noqa: S704 (fixed ASCII)
    page = env.get_template(f"emails/{kind}.mjml.j2").render(**values)
    html = render.inline_css(render.compile_mjml(page))
    text = env.get_template(f"emails/{kind}.txt.j2").render(**values)
    return subject, html, text


def _marker(key: str) -> str:
    return f"@@nl-{key}@@"


async def deliver(config: Config, to: str, data: bytes) -> Reply:
    connection = Connection(config.smtp, helo=config.sender.from_address.rsplit("@", 1)[1])
    await connection.open()
    try:
        _, reply = await connection.send(config.sender.from_address, to, data)
        return reply
    finally:
        await connection.close()
