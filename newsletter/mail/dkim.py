"""DKIM (RFC 6376): the key is checked once, when a factory is made, and every
message the tool sends (issues and transactional mail alike) is signed the same
way: relaxed/relaxed, rsa-sha256 or ed25519-sha256 (RFC 8463), through OpenSSL.

This module holds the key and the signature field; `mail.signing` signs the
factory's messages fast, canonicalizing their literal pieces once.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa, utils

if TYPE_CHECKING:  # the signing processes load this module, and need no settings
    from newsletter.config import Config

from newsletter.mail.mime import MessageError

# The headers signed when present. Gmail and Yahoo want List-Unsubscribe-Post signed.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
)
# Listed in h= once more than present: a verifier then hashes an empty value for the
# extra one, so a copy of any of these added after signing breaks the signature.
OVERSIGNED = frozenset({b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post"})
WIDTH = 78  # the line length RFC 5322 recommends for the folded signature header
MIN_RSA_BITS = 1024  # RFC 8301: signers MUST NOT use less; 2048 is what we ask for

_WSP = re.compile(rb"[ \t]+")
# Literal prefixes: the regex engine skips ahead through the body far quicker than `in`.
_SPACES = re.compile(rb"  +")
_TRAILING = re.compile(rb" \r\n")
_OTHER_KINDS = (
    (ec.EllipticCurvePrivateKey, "an EC"),
    (dsa.DSAPrivateKey, "a DSA"),
    (ed448.Ed448PrivateKey, "an Ed448"),
)
# A new file: the fix for an unusable key must not overwrite it (it may be wanted elsewhere).
_MAKE_KEY = "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim-rsa.pem"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")  # RFC 6376's sub-domain labels


class DkimKeyError(MessageError):
    """The [dkim] key cannot be used: unreadable, encrypted, too weak or of another kind."""


@dataclass(frozen=True)
class DkimKey:
    selector: bytes
    domain: bytes
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    def pem(self) -> bytes:
        """The private key as PKCS#8 PEM: what a signing process is handed on its pipe."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def algorithm(self) -> bytes:
        return b"rsa-sha256" if isinstance(self.key, rsa.RSAPrivateKey) else b"ed25519-sha256"

    def sign(self, message: bytes) -> bytes:
        """The DKIM-Signature header followed by the message (CRLF line ends)."""
        if b"\r" not in message:  # LF line ends; the factory's messages always have CRLF
            message = message.replace(b"\n", b"\r\n")
        head, body = split_message(message)
        return self.header(head, hashlib.sha256(relaxed_body(body)).digest()) + message

    def header(self, head: bytes, body_hash: bytes) -> bytes:
        """The DKIM-Signature field of a message with these header fields whose relaxed
        body hashes (SHA-256) to body_hash."""
        unsigned, digest = self.unsigned(head, body_hash)
        return finish(unsigned, self.signature(digest))

    def unsigned(self, head: bytes, body_hash: bytes) -> tuple[bytes, bytes]:
        """The field up to its empty b=, and the digest its signature signs."""
        names, signed = select(header_fields(head))
        tags = [
            b"v=1",
            b"a=" + self.algorithm,
            b"c=relaxed/relaxed",
            b"d=" + self.domain,
            b"s=" + self.selector,
            b"t=%d" % time.time(),
            b"h=" + b":".join(names),
            b"bh=" + base64.b64encode(body_hash),
        ]
        unsigned = fold(tags)
        # Uncached: this field is new every time.
        signed.append(relaxed_header.__wrapped__(unsigned).removesuffix(b"\r\n"))
        return unsigned, hashlib.sha256(b"".join(signed)).digest()

    def signature(self, digest: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        return self.key.sign(digest)  # RFC 8463: Ed25519 over the SHA-256 of the headers


def split_message(message: bytes) -> tuple[bytes, bytes]:
    """(header fields, each ending in CRLF; body) of a message with CRLF line ends."""
    split = message.find(b"\r\n\r\n")
    return (message, b"") if split < 0 else (message[: split + 2], message[split + 4 :])


def finish(unsigned: bytes, signature: bytes) -> bytes:
    """The field of `unsigned` with its b= value, folded at 72 characters."""
    value = base64.b64encode(signature)
    chunks = [value[i : i + 72] for i in range(0, len(value), 72)]
    return unsigned + b"\r\n ".join(chunks) + b"\r\n"


def header_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """(lowercased name, field as it stands, folded lines and all) of each header field."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + b"\r\n" + line)
        elif line:
            fields.append((line.split(b":", 1)[0].rstrip(b" \t").lower(), line))
    return fields


def select(fields: list[tuple[bytes, bytes]]) -> tuple[list[bytes], list[bytes]]:
    """The h= names and the relaxed fields they stand for, each name's last instance
    first (RFC 6376 §5.4.2), over-signed names once more than present."""
    present: dict[bytes, list[bytes]] = {}
    for name, raw in fields:
        present.setdefault(name, []).append(raw)
    names: list[bytes] = []
    signed: list[bytes] = []
    for name in SIGNED_HEADERS:
        for raw in reversed(present.get(name, ())):
            names.append(name)
            signed.append(relaxed_header(raw))
        if name in OVERSIGNED:
            names.append(name)
    return names, signed


@lru_cache(maxsize=64)  # the same From, Subject, Date... on every message of a send
def relaxed_header(raw: bytes) -> bytes:
    """RFC 6376 §3.4.2: lowercased name, unfolded, runs of WSP made one space, none
    around the colon or at the end."""
    name, _, value = raw.partition(b":")
    if b"\r\n" in value or b"\t" in value or b"  " in value:
        value = _WSP.sub(b" ", value.replace(b"\r\n", b""))
    return name.rstrip(b" \t").lower() + b":" + value.strip(b" ") + b"\r\n"


def relaxed_piece(piece: bytes) -> bytes:
    """§3.4.4's rewrites within a piece of a body: runs of WSP made one space, none
    before a line end. A body with no tab, no two spaces in a row and no space before
    a line end is its own relaxed form; regexes with literal prefixes find out quickest."""
    if b"\t" in piece:
        piece = _WSP.sub(b" ", piece)
    elif b"  " in piece:  # HTML indentation and the like: common, so its own quicker regex
        piece = _SPACES.sub(b" ", piece)
    return _TRAILING.sub(b"\r\n", piece)  # runs are single spaces by now


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4: the pieces' rewrites, then no trailing empty lines."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    body = relaxed_piece(body)
    end = len(body)
    while end >= 2 and body[end - 2 : end] == b"\r\n":
        end -= 2
    if end == 0:
        return b""
    return body if end + 2 == len(body) else body[:end] + b"\r\n"


def fold(tags: list[bytes]) -> bytes:
    """The signature header up to its empty `b=`, on lines of at most WIDTH characters.
    A line breaks at the space after a ';' or, inside h=, after a ':' (FWS is allowed
    around its colons); relaxed canonicalization of the result is what is signed."""
    done, line = _folded(tuple(tags[:-1]))  # all but bh=: the same all second long
    done, line = _place(done, line, tags[-1])
    return b"\r\n".join((*done, line)) + b"\r\n b="


@lru_cache(maxsize=16)
def _folded(tags: tuple[bytes, ...]) -> tuple[tuple[bytes, ...], bytes]:
    done, line = (), b"DKIM-Signature:"
    for tag in tags:
        done, line = _place(done, line, tag)
    return done, line


def _place(done: tuple[bytes, ...], line: bytes, tag: bytes) -> tuple[tuple[bytes, ...], bytes]:
    """The lines so far and the one being filled, with tag added."""
    pieces = tag.split(b":") if tag.startswith(b"h=") else [tag]
    for i, piece in enumerate(pieces):
        text = piece + (b":" if i < len(pieces) - 1 else b";")
        joint = b"" if i else b" "
        if len(line) + len(joint) + len(text) > WIDTH:
            done, line = (*done, line), b" " + text
        else:
            line += joint + text
    return done, line


def load_key(config: Config) -> DkimKey | None:
    """The [dkim] key, checked with its selector and domain; None when [dkim] is unset."""
    settings = config.dkim
    given = {"selector": settings.selector, "domain": settings.domain}
    if not settings.key_file:
        if any(given.values()):
            raise DkimKeyError(
                "dkim: selector and domain are set but key_file is not, so mail would go out "
                "unsigned; set key_file to your private key file, or remove [dkim]"
            )
        return None
    if missing := [name for name, value in given.items() if not value]:
        verb = "is" if len(missing) == 1 else "are"
        raise DkimKeyError(
            f"dkim: key_file is set but {' and '.join(missing)} {verb} not; set all three "
            "(the DNS record is SELECTOR._domainkey.DOMAIN), or none"
        )
    for name, value in given.items():
        if not _DNS_NAME.fullmatch(value):
            raise DkimKeyError(
                f"dkim.{name}: {value!r} is not a DNS name (letters, digits and hyphens, in "
                "dot-separated labels); write it as in your DNS record SELECTOR._domainkey.DOMAIN"
            )
    path = Path(settings.key_file)
    path = path if path.is_absolute() else config.root / path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DkimKeyError(
            f"dkim.key_file: {path} cannot be read ({exc.strerror}); "
            "point key_file at a readable private key file"
        ) from None
    return DkimKey(settings.selector.encode(), settings.domain.encode(), private_key(data, path))


def private_key(data: bytes, path: Path) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """An RSA (at least 1024 bits) or Ed25519 key from PEM (PKCS#8 or traditional), or
    from the bare base64 Ed25519 seed dkimpy's `dknewkey` writes."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's word for "encrypted, and no password given"
        raise DkimKeyError(
            f"dkim.key_file: {path} is encrypted; write it out without a passphrase, "
            f"e.g. `openssl pkey -in {path.name} -out plain.pem`, and point key_file at that"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        key = _dknewkey_seed(data)
        if key is None:
            raise DkimKeyError(
                f"dkim.key_file: {path} is not a PEM private key; make one with "
                f"`{_MAKE_KEY}` and point key_file at it"
            ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise DkimKeyError(
                f"dkim.key_file: {path} is a {key.key_size}-bit RSA key, too weak for "
                f"receivers to accept; 2048 bits is expected: `{_MAKE_KEY}`, then point "
                "key_file at it"
            )
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    kind = next((k for t, k in _OTHER_KINDS if isinstance(key, t)), "another kind of")
    raise DkimKeyError(
        f"dkim.key_file: {path} is {kind} key, not an RSA or Ed25519 one; make a 2048-bit "
        f"RSA key with `{_MAKE_KEY}` and point key_file at it"
    )


def _dknewkey_seed(data: bytes) -> ed25519.Ed25519PrivateKey | None:
    try:
        seed = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        return None
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed) if len(seed) == 32 else None
