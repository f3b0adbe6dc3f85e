"""DKIM: the key is checked once, when a factory is made, and every message the
tool sends (issues and transactional mail alike) is signed the same way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.config import Config
from newsletter.mail.mime import MessageError

# dkimpy's default leaves List-Unsubscribe-Post out; Gmail and Yahoo want it signed.
SIGNED_HEADERS = [
    h.encode()
    for h in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "mime-version",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "content-type",
    ]
]


@dataclass(frozen=True)
class DkimKey:
    selector: bytes
    domain: bytes
    pem: bytes

    def sign(self, message: bytes) -> bytes:
        import dkim

        signature = dkim.sign(
            message,
            self.selector,
            self.domain,
            self.pem,
            include_headers=SIGNED_HEADERS,
            linesep=b"\r\n",
        )
        return signature + message


def load_key(config: Config) -> DkimKey | None:
    settings = config.dkim
    if not settings.key_file:
        return None
    if not (settings.selector and settings.domain):
        raise MessageError(
            "dkim: key_file is set but selector or domain is not; set all three, or none"
        )
    path = Path(settings.key_file)
    path = path if path.is_absolute() else config.root / path
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise MessageError(f"dkim.key_file: {path} cannot be read ({exc.strerror})") from None
    import dkim.crypto

    try:
        dkim.crypto.parse_pem_private_key(pem)
    except Exception:  # dkimpy raises several kinds; any of them means unusable
        raise MessageError(
            f"dkim.key_file: {path} is not an unencrypted PEM private key dkimpy can use"
        ) from None
    return DkimKey(settings.selector.encode(), settings.domain.encode(), pem)
