"""Signed tokens for links in emails (itsdangerous). The unsubscribe token never
expires: a link in a years-old email must still work, without a login."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer
from itsdangerous.encoding import base64_encode

from newsletter.config import Config
from newsletter.errors import NewsletterError

SHORT_PAYLOAD = 40  # bytes of JSON that zlib cannot shorten (its header and checksum cost 6)
# VERP tokens ride in the local part of an address: digits, lower-case hex and "-" only,
# since some MTAs lower-case local parts, and short enough for RFC 5321's 64 characters.
VERP_MAC = 12  # hex characters (48 bits): a forger must guess them per subscriber
ISSUE_TAG = 6  # hex characters telling one subscriber's issues apart
BOUNCE_TOKEN = re.compile(rf"(\d{{1,12}})-([0-9a-f]{{{ISSUE_TAG}}})-([0-9a-f]{{{VERP_MAC}}})")
MAILTO_TOKEN = re.compile(rf"(\d{{1,12}})-([0-9a-f]{{{VERP_MAC}}})")


class TokenError(NewsletterError):
    """No signing secret is configured, or a token is forged or damaged."""


class TokenExpired(TokenError):
    """A confirmation link older than its lifetime."""


def secret_of(config: Config) -> str:
    key = config.web.secret_key
    if key is None or len(key.get_secret_value()) < 16:
        raise TokenError(
            "web.secret_key: is not set (or shorter than 16 characters); it signs unsubscribe "
            "links: set NEWSLETTER_WEB_SECRET_KEY or put it in secrets.toml ('newsletter init' "
            "writes one)"
        )
    return key.get_secret_value()


@dataclass(frozen=True)
class ConfirmLink:
    """A genuine, unexpired confirmation link: whom it names, when it was made
    (to the millisecond), and the fingerprints of the address and name it was made for."""

    subscriber_id: int
    issued: dt.datetime
    address: str
    name: str


class Signer:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()
        # Keyed once: copying a keyed HMAC skips the key setup on every digest.
        self._keyed = hmac.new(self._secret, digestmod=hashlib.sha256)
        self._unsubscribe = URLSafeSerializer(secret, salt="unsubscribe")
        signer = self._unsubscribe.make_signer()
        # itsdangerous derives the key again for every signature; it is the same each time.
        self._unsubscribe_mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)
        self._confirm = URLSafeSerializer(secret, salt="confirm")

    def unsubscribe_token(self, subscriber_id: int, email: str) -> str:
        # The address's fingerprint rides along: an id that SQLite hands out again
        # after an erasure must not let an old link unsubscribe someone new.
        value = [subscriber_id, self.digest("address", email, size=10)]
        payload = json.dumps(value, separators=(",", ":")).encode()
        if len(payload) > SHORT_PAYLOAD:
            return self._unsubscribe.dumps(value)
        # One token per recipient per send: the serializer's dumps() derives its key and
        # tries zlib every time (~60 µs). A payload this short never compresses, so its
        # base64 signed with the derived key's HMAC gives the very same token (~4 µs).
        body = base64_encode(payload)
        mac = self._unsubscribe_mac.copy()
        mac.update(body)
        return (body + b"." + base64_encode(mac.digest())).decode()

    def subscriber_of(self, token: str) -> tuple[int, str]:
        """(subscriber id, address fingerprint) of a genuine unsubscribe link."""
        try:
            value = self._unsubscribe.loads(token)
        except BadSignature:
            raise TokenError("this unsubscribe link is damaged or not ours") from None
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)):
            raise TokenError("this unsubscribe link is damaged or not ours")
        return value[0], str(value[1])

    def matches(self, fingerprint: str, email: str) -> bool:
        return hmac.compare_digest(fingerprint, self.digest("address", email, size=10))

    def confirm_token(self, subscriber_id: int, email: str, name: str) -> str:
        """A confirmation link's token: every unexpired one works, so it names the
        subscriber and proves the address (an id reused after an erasure does not
        match) and the name typed with it (only that signup's name is applied). It
        carries its own time in milliseconds (itsdangerous's has whole seconds): a
        link made before a confirmation must be told from one made just after it."""
        issued = int(time.time() * 1000)
        address = self.digest("address", email, size=10)
        return self._confirm.dumps([subscriber_id, address, self.name_digest(name), issued])

    def confirm_of(self, token: str, max_age_seconds: int) -> ConfirmLink:
        """What a confirmation link younger than max_age names, and when it was made."""
        try:
            value = self._confirm.loads(token)
        except BadSignature:
            raise TokenError("this confirmation link is damaged or not ours") from None
        if not (
            isinstance(value, list)
            and len(value) == 4
            and all(isinstance(value[i], int) for i in (0, 3))
        ):
            raise TokenError("this confirmation link is damaged or not ours")
        subscriber_id, address, name, issued = value
        if time.time() - issued / 1000 > max_age_seconds:
            raise TokenExpired("this confirmation link has expired")
        moment = dt.datetime.fromtimestamp(issued // 1000, dt.UTC)
        return ConfirmLink(
            subscriber_id, moment.replace(microsecond=issued % 1000 * 1000), str(address), str(name)
        )

    def name_digest(self, name: str) -> str:
        return self.digest("name", name, size=10)

    def issue_tag(self, slug: str) -> str:
        return self.digest("issue", slug, size=ISSUE_TAG)

    def bounce_token(self, subscriber_id: int, tag: str) -> str:
        """The VERP token of one delivery: subscriber id and issue tag, signed."""
        body = f"{subscriber_id}-{tag}"
        return f"{body}-{self.digest('verp', body, size=VERP_MAC)}"

    def bounce_of(self, token: str) -> tuple[int, str]:
        """(subscriber id, issue tag) of a genuine VERP token."""
        match = BOUNCE_TOKEN.fullmatch(token.lower())
        if match is None or not hmac.compare_digest(
            match[3], self.digest("verp", f"{match[1]}-{match[2]}", size=VERP_MAC)
        ):
            raise TokenError(f"bounce token {token!r} is damaged or not ours")
        return int(match[1]), match[2]

    def mailto_token(self, subscriber_id: int, email: str) -> str:
        """The token of an unsubscribe mailto; like the link, it is bound to the address."""
        return f"{subscriber_id}-{self.digest('mailto', subscriber_id, email, size=VERP_MAC)}"

    def mailto_of(self, token: str) -> tuple[int, str]:
        """(subscriber id, signature) of a well-formed mailto token; `mailto_matches` checks it."""
        match = MAILTO_TOKEN.fullmatch(token.lower())
        if match is None:
            raise TokenError(f"unsubscribe token {token!r} is damaged or not ours")
        return int(match[1]), match[2]

    def mailto_matches(self, subscriber_id: int, signature: str, email: str) -> bool:
        expected = self.digest("mailto", subscriber_id, email, size=VERP_MAC)
        return hmac.compare_digest(signature.lower(), expected)

    def digest(self, *parts: object, size: int = 20) -> str:
        """A stable keyed hash: the same inputs always give the same hex string."""
        message = "\x1f".join(str(p) for p in parts).encode()
        mac = self._keyed.copy()
        mac.update(message)
        return mac.hexdigest()[:size]
