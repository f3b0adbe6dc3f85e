"""Signing a factory's messages fast. Every recipient's body differs (their
unsubscribe link), so every message needs its own body hash; but a factory's
messages are its literal pieces with each recipient's short values between, so
`CutSigner` canonicalizes the literal pieces (~45 KB, tens of runs of spaces)
once and only the values per message. During a send the signing itself runs in
processes of its own (`mail.signers`), so it takes no time from the send loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from newsletter.mail.dkim import DkimKey, finish, relaxed_body, relaxed_piece, split_message

# A value beginning or ending with one of these could, with the piece beside it, make
# a run of WSP or a WSP before a line end across the seam; values the factory makes
# begin with "=" and end with LF.
_SEAM_START = b" \t\r\n"
_SEAM_END = b" \t\r"


class CutSigner:
    """Signs the messages of one factory: its literal pieces at even positions, each
    recipient's values between them. The literal part of the body is canonicalized
    once here, not per message: §3.4.4's rewrites stay within a piece unless
    whitespace meets whitespace or a line end at a seam, and every body value is
    quoted-printable between soft breaks (`=` first, LF last). Anything else is
    signed the whole body's way."""

    def __init__(self, key: DkimKey, literals: Sequence[bytes]) -> None:
        """literals: the pieces a message is cut into; its parts are these with one
        value between each two (parts[2k] is literals[k])."""
        self.key = key
        self.literals = tuple(literals)
        first, split = next(
            ((k, at) for k, p in enumerate(literals) if (at := p.find(b"\r\n\r\n")) >= 0),
            (len(literals), -1),
        )
        self._at, self._head_end = 2 * first, split + 2
        body = [literals[first][split + 4 :], *literals[first + 1 :]] if split >= 0 else []
        self._body = [x for p in body for x in (b"", relaxed_piece(p))][1:]
        # The one rule that is not piecewise: trailing empty lines. A body ending in a
        # line of text (a MIME closing boundary) has none to drop.
        last = self._body[-1] if self._body else b""
        self._usable = len(last) > 2 and last.endswith(b"\r\n") and last[-3] != ord("\n")

    def sign(self, parts: Sequence[bytes]) -> bytes:
        """The signed message of these parts (the literal pieces with values between)."""
        return b"".join([self.field(parts), *parts])

    def field(self, parts: Sequence[bytes]) -> bytes:
        """The DKIM-Signature field of the message of these parts."""
        unsigned, digest = self._unsigned(parts)
        return finish(unsigned, self.key.signature(digest))

    def parts(self, values: Sequence[bytes]) -> list[bytes]:
        """The parts of the message with these values between the literal pieces."""
        parts = [self.literals[0]]
        for value, literal in zip(values, self.literals[1:], strict=True):
            parts += (value, literal)
        return parts

    def _unsigned(self, parts: Sequence[bytes]) -> tuple[bytes, bytes]:
        head = self._head(parts)
        body = self._relaxed(parts, head)
        if body is None:  # not a value the factory makes: the whole message, the slow way
            head, rest = split_message(b"".join(parts))
            return self.key.unsigned(head, hashlib.sha256(relaxed_body(rest)).digest())
        return self.key.unsigned(head, hashlib.sha256(body).digest())

    def _head(self, parts: Sequence[bytes]) -> bytes:
        return b"".join(parts[: self._at]) + parts[self._at][: self._head_end]

    def relaxed_body(self, parts: Sequence[bytes]) -> bytes | None:
        """The relaxed body of these parts, or None where the quick way cannot be sure:
        a header value that ends the header early, a value that could join a run of
        whitespace or a line end with the piece beside it."""
        return self._relaxed(parts, self._head(parts))

    def _relaxed(self, parts: Sequence[bytes], head: bytes) -> bytes | None:
        if not self._usable or b"\r\n\r\n" in head:
            return None
        chunks = list(self._body)
        for i in range(1, len(chunks), 2):
            value = parts[self._at + i]
            if not value or value[0] in _SEAM_START or value[-1] in _SEAM_END:
                return None
            chunks[i] = relaxed_piece(value)
        return b"".join(chunks)
