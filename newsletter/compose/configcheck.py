"""What `check` and every send say about the settings themselves: values valid
one by one that would still go wrong in use. Errors block a send before its first
connection; warnings never do (the demo sends with its placeholder identity)."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from newsletter.config import CONFIG_FILE, ENV_PREFIX, SECRETS_FILE, Config
from newsletter.sections import password_variable

# The demo's newsletter.toml, which `newsletter init` copies: its identity is a placeholder.
DEMO_CONFIG = Path(__file__).parent.parent / "defaults" / CONFIG_FILE


@dataclass(frozen=True)
class Concern:
    """A setting that is valid alone but would go wrong in use: an error blocks a send."""

    level: Literal["error", "warning"]
    where: str
    message: str


def concerns(config: Config) -> list[Concern]:
    """What `check` and every send say about the settings, before any connection."""
    found = []
    smtp = config.smtp
    if _no_password(smtp):
        found.append(
            Concern(
                "error",
                config.where("smtp", "username"),
                f"smtp.username is {smtp.username!r} but no password is set, so the server "
                f"would refuse the login; set {ENV_PREFIX}SMTP_PASSWORD, or put password = "
                f'"…" under [smtp] in {SECRETS_FILE}',
            )
        )
    found += _relay_logins(config)
    found += _dkim_key(config)
    found += _base_url_concerns(config)
    found += _demo_identity(config)
    return found


def _no_password(login) -> bool:
    """A login named without its password: the server would refuse it."""
    return bool(login.username) and not (login.password and login.password.get_secret_value())


def _dkim_key(config: Config) -> list[Concern]:
    """A [dkim] key that cannot sign: `check` says so, not the send (or the worker,
    at a scheduled hour)."""
    if not config.dkim.configured:
        return []  # OpenSSL's bindings load only when there is a key to check
    from newsletter.mail.dkim import DkimKeyError, load_key

    try:
        load_key(config)
    except DkimKeyError as exc:
        key = "key_file" if config.dkim.key_file else "selector"
        return [Concern("error", config.where("dkim", key), str(exc))]
    return []


def _relay_logins(config: Config) -> list[Concern]:
    found = []
    for index, relay in enumerate(config.smtp.relay_list() if config.smtp.relays else [], 1):
        if _no_password(relay.settings):
            found.append(
                Concern(
                    "error",
                    config.where("smtp", "relays"),
                    f"smtp.relays[{index}].username is {relay.settings.username!r} but no password "
                    f"is set, so the relay would refuse the login; set "
                    f"{password_variable(relay.name)}",
                )
            )
    return found


# What else of the demo's would go out in every email once the editor has put in
# their own From and postal address.
LEFTOVERS = (
    ("newsletter", "base_url", "every unsubscribe and web link would point at the demo's site"),
    ("sender", "from_name", "readers would see the demo person's name"),
    ("signature", "name", "the issue would be signed with the demo person's name"),
)


def _demo_leftovers(config: Config, demo: dict) -> list[Concern]:
    found = []
    for section, key, why in LEFTOVERS:
        value = getattr(getattr(config, section), key)
        if str(value).rstrip("/") == str(demo[section][key]).rstrip("/"):
            found.append(
                Concern(
                    "warning",
                    config.where(section, key),
                    f"{section}.{key} is still the demo's {value}; {why}, so put your own here",
                )
            )
    return found


def _base_url_concerns(config: Config) -> list[Concern]:
    url = config.newsletter.base_url
    parts = urlsplit(url)
    if parts.scheme == "https":
        return []
    where = config.where("newsletter", "base_url")
    if _is_loopback(parts.hostname or ""):
        return [
            Concern(
                "warning",
                where,
                f"newsletter.base_url {url!r} is plain http on this machine: fine for trying "
                "things out, but readers cannot open its links; set your site's https:// "
                "address before sending to readers",
            )
        ]
    return [
        Concern(
            "error",
            where,
            f"newsletter.base_url {url!r} is not https, and the one-click unsubscribe link "
            "(RFC 8058) and Gmail's and Yahoo's bulk-sender rules need https; serve the site "
            f"over TLS and write https://{parts.netloc}{parts.path}",
        )
    ]


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _demo_identity(config: Config) -> list[Concern]:
    """Warnings while the demo's From or postal address is still in place (the demo
    itself sends with them, so these never block)."""
    demo = tomllib.loads(DEMO_CONFIG.read_text(encoding="utf-8"))
    found = []
    if config.sender.from_address.lower() == demo["sender"]["from_address"].lower():
        found.append(
            Concern(
                "warning",
                config.where("sender", "from_address"),
                f"sender.from_address is still the demo's {config.sender.from_address}; "
                "put your own address (and from_name) here before sending to readers",
            )
        )
    postal = demo["newsletter"]["postal_address"]
    if config.newsletter.postal_address.split() == postal.split():
        found.append(
            Concern(
                "warning",
                config.where("newsletter", "postal_address"),
                "newsletter.postal_address is still the demo's placeholder; put your own "
                "postal address here (the law requires a real one in every email)",
            )
        )
    if not found:  # the identity is the editor's: the rest of the demo's must not linger
        found += _demo_leftovers(config, demo)
    return found
