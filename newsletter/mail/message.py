"""A prepared body + a recipient → the bytes of one email. The one MIME builder:
issues, confirmation and welcome mails all come out of it, signed alike.

stdlib `EmailMessage(...).as_bytes()` costs ~3.5 ms a message, so a kind of
message is built once, as bytes cut at its per-recipient slots (To,
Message-ID, the unsubscribe link, the greeting name, a confirmation link);
each recipient then costs a few encodes and one join. `reference()` builds
the same message the slow stdlib way; the tests hold the two equal once parsed.

Bodies are quoted-printable: every line stays under 76 octets (far below
SMTP's 998), every line ends in CRLF and none starts with ".", so the bytes
go on the wire as they are (the transport skips its per-message scan).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import TYPE_CHECKING, Literal, Protocol

from newsletter.config import Config
from newsletter.fields import greeting_name
from newsletter.links import Links
from newsletter.mail import mime
from newsletter.mail.mime import SMTP, MessageError
from newsletter.tokens import Signer

if TYPE_CHECKING:
    from newsletter.compose.render import PreparedIssue

__all__ = ["MessageError", "MessageFactory", "Recipient", "list_id"]

ONE_CLICK = "List-Unsubscribe=One-Click"
Kind = Literal["issue", "welcome", "confirm"]


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str = ""  # the full name: the To: header's; the greeting takes the first name of it
    # Per-recipient values for slots other than name and the list links, e.g. confirm_url.
    values: Mapping[str, str] = field(default_factory=dict)


class Addressee(Protocol):
    """Anything that names a subscriber: a Recipient, or a claimed delivery."""

    @property
    def subscriber_id(self) -> int: ...


def list_id(config: Config) -> str:
    domain = config.sender.from_address.rsplit("@", 1)[1]
    return f"{_name_slug(config)[:60]}.{domain}"


def _name_slug(config: Config) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in config.newsletter.name.lower()).strip("-")
    return "-".join(filter(None, slug.split("-")))


def feedback_id(config: Config, slug: str) -> str:
    """Gmail's feedback loop header, `campaign:mailtype:SenderId`: Postmaster Tools then
    reports complaints per issue. The SenderId must be 5 to 15 characters and stable."""
    sender_id = _name_slug(config)[:15].strip("-")
    if len(sender_id) < 5:
        sender_id = f"{sender_id}-list".lstrip("-")
    campaign = "".join(c if c.isalnum() or c in "-_." else "-" for c in slug)
    return f"{campaign}:newsletter:{sender_id}"


class MessageFactory:
    """Builds each recipient's message of one kind: an issue, or a transactional mail.
    Issues and welcome mails carry the list headers (one-click unsubscribe); a
    confirmation goes to someone not yet on the list, so it carries none."""

    def __init__(
        self,
        prepared: PreparedIssue,
        config: Config,
        signer: Signer,
        *,
        date: dt.datetime | None = None,
        test: bool = False,
        kind: Kind = "issue",
    ) -> None:
        self.prepared = prepared
        self.config = config
        self.signer = signer
        self.kind = kind
        self.test = test
        self.subject = ("[TEST] " if test else "") + prepared.subject
        self.date = format_datetime(date or dt.datetime.now(dt.UTC))
        self.sender = config.sender.from_address
        self.domain = self.sender.rsplit("@", 1)[1]
        self.bounces = config.bounces.address
        self._issue_tag = signer.issue_tag(prepared.slug)
        self.links = Links(config.newsletter.base_url, signer)
        self.web_url = self.links.web(prepared.slug)
        self._archive_url = self.links.archive()
        self.boundary = f"=_nl_{secrets.token_hex(12)}"  # "=_" never occurs in QP text
        self.signers = None
        self._build_skeleton()

    @property
    def listed(self) -> bool:
        return self.kind != "confirm"

    # The per-recipient values, shared by the fast and the reference paths.
    def message_id(self, r: Recipient) -> str:
        if self.test or self.kind != "issue":
            return f"<{self.kind}.{secrets.token_hex(10)}@{self.domain}>"
        digest = self.signer.digest(self.prepared.slug, r.subscriber_id)
        return f"<{self.prepared.slug}.{digest}@{self.domain}>"

    def unsubscribe_url(self, r: Recipient) -> str:
        return self.links.unsubscribe(r.subscriber_id, r.email)

    def _unsubscribe(self, r: Recipient) -> str:
        if not self.listed:
            return ""
        return r.values.get("unsubscribe_url") or self.unsubscribe_url(r)

    def slot_values(self, r: Recipient, unsubscribe: str) -> dict[str, str]:
        """Plain-text values of every slot the bodies may hold."""
        return {
            "name": greeting_name(r.name) or self.prepared.fallback_name,
            "full_name": r.name or self.prepared.fallback_name,
            "unsubscribe_url": unsubscribe,
            "web_url": self.web_url,
            "archive_url": self._archive_url,
            **r.values,
        }

    def envelope_sender(self, r: Addressee) -> str:
        """MAIL FROM: with a bounce address, an issue's is VERP (`bounces+TOKEN@domain`), so
        that a bounce names the delivery it is about; other mail bounces to the plain address."""
        if self.bounces is None:
            return self.sender
        if self.kind != "issue" or self.test:
            return self.bounces
        local, domain = self.bounces.rsplit("@", 1)
        return f"{local}+{self.signer.bounce_token(r.subscriber_id, self._issue_tag)}@{domain}"

    def _mailto(self, r: Recipient) -> str:
        # The mailto must reach a mailbox `bounces fetch` reads, with a token saying who.
        if self.bounces is None or r.subscriber_id <= 0:
            return f"mailto:{self.sender}?subject=unsubscribe"
        local, domain = self.bounces.rsplit("@", 1)
        token = self.signer.mailto_token(r.subscriber_id, r.email)
        return f"mailto:{local}+unsubscribe-{token}@{domain}?subject=unsubscribe"

    def build(self, r: Recipient) -> bytes:
        return self.build_with_id(r)[0]

    def build_with_id(self, r: Recipient) -> tuple[bytes, str]:
        parts, message_id = self.parts(r)
        return (self.dkim.sign(parts) if self.dkim else b"".join(parts)), message_id

    async def build_async(self, r: Recipient) -> tuple[bytes, str]:
        """`build_with_id` for the send loop: inside `signing()`, signing processes
        sign the message while this one sends others."""
        parts, message_id = self.parts(r)
        if self.dkim is None:
            return b"".join(parts), message_id
        field = await self.signers.field(parts) if self.signers else None
        if field is None:  # none ready (yet), or outside `signing()`
            return self.dkim.sign(parts), message_id
        return b"".join([field, *parts]), message_id

    @contextlib.asynccontextmanager
    async def signing(self) -> AsyncIterator[None]:
        """With a [dkim] key: signing processes for `build_async` until the block ends,
        as many as `[dkim] processes` says or as pay on this machine."""
        if self.dkim is None:
            yield
            return
        from newsletter.mail.signers import SigningProcesses, how_many

        count = how_many(self.config.dkim.processes, self.dkim.key)
        if count == 0:
            yield
            return
        async with SigningProcesses.started(self.dkim, count) as signers:
            self.signers = signers
            try:
                yield
            finally:
                self.signers = None

    def parts(self, r: Recipient) -> tuple[list[bytes], str]:
        """The fast path: encode the recipient's values between the precut pieces."""
        message_id = self.message_id(r)
        name = mime.header_safe(r.name, "name")
        email = mime.header_safe(r.email, "email")
        unsubscribe = self._unsubscribe(r)
        values = {
            "to": mime.to_header(name, email),
            "message_id": message_id.encode(),
            "list_unsubscribe": unsubscribe.encode(),
            "list_mailto": self._mailto(r).encode() if self.listed else b"",
            **self._constants,
        }
        slots = self.slot_values(r, unsubscribe)
        for key, part, slot in self._slot_keys:
            value = slots[slot]
            values[key] = mime.qp_value(html.escape(value) if part == "html" else value)
        return [
            self._head,
            *(p for key, text in self._tail for p in (values[key], text)),
        ], message_id

    def reference(self, r: Recipient) -> bytes:
        """The same message built the slow, obvious stdlib way."""
        unsubscribe = self._unsubscribe(r)
        bodies = self.prepared.fill_values(self.slot_values(r, unsubscribe))
        msg = EmailMessage(policy=SMTP)
        msg["From"] = Address(self.config.sender.from_name, addr_spec=self.sender)
        msg["To"] = Address(r.name, addr_spec=r.email) if r.name else r.email
        if self.config.sender.reply_to:
            msg["Reply-To"] = self.config.sender.reply_to
        msg["Subject"] = self.subject
        msg["Date"] = self.date
        msg["Message-ID"] = self.message_id(r)
        if self.listed:
            msg["List-Id"] = formataddr((self.config.newsletter.name, list_id(self.config)))
            msg["List-Unsubscribe"] = f"<{unsubscribe}>, <{self._mailto(r)}>"
            msg["List-Unsubscribe-Post"] = ONE_CLICK
        if self.kind == "issue":
            msg["Precedence"] = "bulk"
            msg["Feedback-ID"] = feedback_id(self.config, self.prepared.slug)
        else:
            msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(bodies.text, charset="utf-8", cte="quoted-printable")
        msg.add_alternative(bodies.html, subtype="html", charset="utf-8", cte="quoted-printable")
        return msg.as_bytes()

    def _headers(self) -> list[str]:
        config, fold = self.config, SMTP.fold
        headers = [
            fold("From", formataddr((config.sender.from_name, self.sender), charset="utf-8")),
            "To: \x00to\x00\r\n",
        ]
        if config.sender.reply_to:
            headers.append(fold("Reply-To", config.sender.reply_to))
        headers += [
            fold("Subject", self.subject),
            fold("Date", self.date),
            "Message-ID: \x00message_id\x00\r\n",
            "MIME-Version: 1.0\r\n",
        ]
        if self.listed:
            list_name = formataddr((config.newsletter.name, list_id(config)), charset="utf-8")
            headers += [
                fold("List-Id", list_name),
                "List-Unsubscribe: <\x00list_unsubscribe\x00>,\r\n <\x00list_mailto\x00>\r\n",
                f"List-Unsubscribe-Post: {ONE_CLICK}\r\n",
            ]
        if self.kind == "issue":
            # Precedence: bulk keeps vacation responders quiet (no auto-reply loops).
            headers += [
                "Precedence: bulk\r\n",
                fold("Feedback-ID", feedback_id(config, self.prepared.slug)),
            ]
        else:
            headers.append("Auto-Submitted: auto-generated\r\n")
        headers += [
            f'Content-Type: multipart/alternative; boundary="{self.boundary}"\r\n',
            "\r\n",
        ]
        return headers

    def _build_skeleton(self) -> None:
        pieces: list[bytes | str] = mime.split_markers("".join(self._headers()))
        for subtype, template in (("plain", self.prepared.text), ("html", self.prepared.html)):
            pieces[-1] += (
                f"--{self.boundary}\r\n"
                f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            ).encode()
            body = mime.body_pieces(template, "text" if subtype == "plain" else "html")
            pieces[-1] += body[0]
            pieces += body[1:]
            pieces[-1] += b"\r\n"
        pieces[-1] += f"--{self.boundary}--\r\n".encode()
        self._head = pieces[0]
        self._tail = tuple(zip(pieces[1::2], pieces[2::2], strict=True))
        # Values that are the same for everyone are encoded once, here.
        self._constants = {
            "html:web_url": mime.qp_value(html.escape(self.web_url)),
            "text:web_url": mime.qp_value(self.web_url),
        }
        keys = {key for key, _ in self._tail if ":" in key}
        # (key, part, slot name) of the slots filled per recipient, split once here.
        self._slot_keys = tuple((k, *k.split(":", 1)) for k in sorted(keys - set(self._constants)))
        self.dkim = cut_signer(self.config, [self._head, *(text for _, text in self._tail)])


def signing_key(config: Config):
    """The [dkim] key, checked; None without a key_file. OpenSSL's bindings (some
    7 MB) are loaded only when there is a key to sign with."""
    if not config.dkim.configured:
        return None
    from newsletter.mail.dkim import load_key

    return load_key(config)


def cut_signer(config: Config, literals: list[bytes]):
    """The signer of messages cut into these literal pieces, or None without a key."""
    if (key := signing_key(config)) is None:
        return None
    from newsletter.mail.signing import CutSigner

    return CutSigner(key, literals)
