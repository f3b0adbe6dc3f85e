"""Signed tokens for links in emails (itsdangerous). The unsubscribe token never
expires: a link in a years-old email must still work, without a login."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer
from itsdangerous.encoding import base64_encode

from newsletter.config import Config
from newsletter.errors import NewsletterError

SHORT_PAYLOAD = 40  # bytes of JSON that zlib cannot shorten (its header and checksum cost 6)


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
        self._unsubscribe = URLSafeSerializer(secret, salt="unsubscribe")
        self._unsubscribe_signer = self._unsubscribe.make_signer()
        self._confirm = URLSafeSerializer(secret, salt="confirm")

    def unsubscribe_token(self, subscriber_id: int, email: str) -> str:
        # The address's fingerprint rides along: an id that SQLite hands out again
        # after an erasure must not let an old link unsubscribe someone new.
        value = [subscriber_id, self.digest("address", email, size=10)]
        payload = json.dumps(value, separators=(",", ":")).encode()
        if len(payload) > SHORT_PAYLOAD:
            return self._unsubscribe.dumps(value)
        # One token per recipient per send: the serializer's dumps() derives its key and
        # tries zlib every time (~60 µs). A payload this short never compresses, so
        # signing its base64 with a signer made once gives the very same token.
        return self._unsubscribe_signer.sign(base64_encode(payload)).decode()

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

    def digest(self, *parts: object, size: int = 20) -> str:
        """A stable keyed hash: the same inputs always give the same hex string."""
        message = "\x1f".join(str(p) for p in parts).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:size]
