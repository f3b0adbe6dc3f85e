"""Transactional emails (confirmation, welcome): rendered from templates/emails/
like issues are (Jinja2 → MJML → inlined HTML, plus text), and sent through the
same SMTP transport. Low volume, so the plain stdlib message builder serves."""

from __future__ import annotations

import datetime as dt
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from newsletter import render
from newsletter.config import Config
from newsletter.transport import Connection, Reply

SUBJECTS = {
    "confirm": "Confirm your subscription to {name}",
    "welcome": "Welcome to {name}",
}


def build(config: Config, kind: str, to: str, **context: object) -> bytes:
    env = render.environment(config.root)
    subject = SUBJECTS[kind].format(name=config.newsletter.name)
    values = {"newsletter": config.newsletter, "subject": subject, **context}
    page = env.get_template(f"emails/{kind}.mjml.j2").render(**values)
    html = render.inline_css(render.compile_mjml(page))
    text = env.get_template(f"emails/{kind}.txt.j2").render(**values)
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


async def deliver(config: Config, to: str, data: bytes) -> Reply:
    connection = Connection(config.smtp, helo=config.sender.from_address.rsplit("@", 1)[1])
    await connection.open()
    try:
        _, reply = await connection.send(config.sender.from_address, to, data)
        return reply
    finally:
        await connection.close()
