"""Byte-level pieces of a MIME message that the factory precuts once per issue:
quoted-printable bodies that are already wire-ready, header values checked
against injection, and templates split at their slots."""

from __future__ import annotations

import binascii
from email import policy
from email.headerregistry import Address
from email.utils import formataddr

from newsletter.compose.slots import SlotTemplate
from newsletter.errors import NewsletterError

SMTP = policy.SMTP


class MessageError(NewsletterError):
    """A message cannot be built (a bad DKIM key, a header value that would inject)."""


def qp(data: str) -> bytes:
    """Quoted-printable with CRLF line ends and no line starting with '.'."""
    encoded = binascii.b2a_qp(data.replace("\r\n", "\n").encode("utf-8"), istext=True)
    encoded = encoded.replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n=2E")
    return b"=2E" + encoded[1:] if encoded.startswith(b".") else encoded


def qp_value(value: str) -> bytes:
    # Each value sits on lines of its own between soft breaks, so it can never
    # make a neighbouring line too long, and the decoded text is unchanged.
    return b"=\r\n" + qp(value) + b"=\r\n"


def header_safe(value: str, what: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise MessageError(f"{what}: {value!r} contains a line break; refusing to send it")
    return value


def to_header(name: str, email: str) -> bytes:
    if not name:
        return email.encode()
    if name.isascii() or len(name.encode()) <= 40:
        return formataddr((name, email), charset="utf-8").encode()
    # A long non-ASCII name needs several RFC 2047 encoded words on folded lines;
    # rare enough to leave to the stdlib.
    folded = SMTP.fold("To", str(Address(name, addr_spec=email)))
    return folded.removeprefix("To: ").removesuffix("\r\n").encode()


def split_markers(text: str) -> list:
    """'a\\0key\\0b' → [b'a', 'key', b'b']: literal bytes and slot keys, alternating."""
    parts = text.split("\x00")
    return [p.encode() if i % 2 == 0 else p for i, p in enumerate(parts)]


def body_pieces(template: SlotTemplate, part: str) -> list:
    """A body as QP bytes alternating with its slot keys ('html:name', …)."""
    pieces: list = [qp(template.head)]
    for name, text in template.tail:
        pieces += [f"{part}:{name}", qp(text)]
    return pieces
