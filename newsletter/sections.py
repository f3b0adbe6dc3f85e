"""The delivery sections of newsletter.toml ([smtp], [schedule], [dkim], [database],
[web], [bounces]) and the value types they share; newsletter.config assembles them."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from newsletter.fields import OneLine, WebUrl

# A host name as EHLO wants it (RFC 5321 4.1.2): letters, digits and inner hyphens,
# dot-separated; or an address literal such as [192.0.2.1].
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.Iv]+\])$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


Security = Literal["starttls", "tls", "none"]
# What a relay has of its own; whatever else it needs (timeout, helo_name) is [smtp]'s.
RELAY_FIELDS = (
    "host",
    "port",
    "security",
    "username",
    "password",
    "ca_file",
    "connections",
    "rate",
)
# What a relay left out and takes from [smtp]. Never the login: it belongs to one server,
# and [smtp]'s password must not be offered to another.
INHERITED = ("port", "security", "ca_file", "connections", "rate")


class RelayConflict(ValueError):
    """Two [[smtp.relays]] entries clash; `loc` says which entry and field."""

    def __init__(self, index: int, field: str, message: str) -> None:
        super().__init__(message)
        self.loc = ("relays", index, field)


class RelaySection(Section):
    """One [[smtp.relays]] entry: a server the send spreads its messages over. Left-out
    fields take [smtp]'s value, except username and password; the password comes
    from NEWSLETTER_SMTP_RELAY_<NAME>_PASSWORD (see `password_variable`)."""

    name: OneLine | None = Field(
        None, min_length=1, max_length=100, description="default: host:port"
    )
    host: OneLine = Field(min_length=1, description="the relay's host name or address")
    port: int | None = Field(None, ge=1, le=65535)
    security: Security | None = None
    username: OneLine | None = None
    password: SecretStr | None = None
    ca_file: str | None = None
    connections: int | None = Field(None, ge=1, le=64)
    rate: float | None = Field(None, ge=0, description="messages per second through it")


def password_variable(name: str) -> str:
    """The environment variable holding a relay's password: 'mx-1.example.com:587'
    → NEWSLETTER_SMTP_RELAY_MX_1_EXAMPLE_COM_587_PASSWORD."""
    return f"NEWSLETTER_SMTP_RELAY_{re.sub(r'[^A-Z0-9]+', '_', name.upper()).strip('_')}_PASSWORD"


@dataclass(frozen=True)
class RelaySettings:
    """A relay as the send uses it: its name, and an [smtp] section that points at
    it (a transport `Connection` takes that as it takes [smtp])."""

    name: str
    settings: SmtpSection

    @property
    def connections(self) -> int:
        return self.settings.connections

    @property
    def rate(self) -> float:
        return self.settings.rate


class SmtpSection(Section):
    host: OneLine = "localhost"
    port: int = Field(587, ge=1, le=65535)
    security: Security = "starttls"
    username: OneLine | None = None
    password: SecretStr | None = None
    ca_file: str | None = Field(None, description="a CA bundle to trust, for a private relay")
    timeout: float = Field(30.0, gt=0)
    connections: int = Field(4, ge=1, le=64)
    rate: float = Field(20.0, ge=0, description="messages per second in all; 0 for no limit")
    max_attempts: int = Field(5, ge=1, le=50)
    retry_delay: float = Field(30.0, ge=0, description="seconds before the first retry; doubles")
    pause_after: int = Field(10, ge=1, description="consecutive connection failures")
    bounce_limit: int = Field(1, ge=1, description="hard bounces before a subscriber stops")
    claim_lease: float = Field(
        60.0,
        ge=5,  # renewed every third of it, on a one-second tick
        description="seconds a sender holds the deliveries it claimed before others may "
        "take them over (renewed while it is alive)",
    )
    helo_name: OneLine | None = Field(
        None, description="the name this machine gives in EHLO; default: its own host name"
    )
    relays: list[RelaySection] = Field(
        default_factory=list, description="several servers to spread a send over"
    )
    cool_after: int = Field(
        3, ge=1, le=100, description="connection failures in a row that take a relay out"
    )
    cool_down: float = Field(30.0, gt=0, le=3600, description="seconds a failing relay rests")

    @field_validator("helo_name")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not HOSTNAME.match(value)):
            raise ValueError(
                f"{value!r} is not a host name; expected this machine's name as the "
                "internet knows it, e.g. mail.example.com"
            )
        return value

    @model_validator(mode="after")
    def _distinct_relays(self) -> SmtpSection:
        seen: dict[str, tuple[int, str]] = {}
        for index, relay in enumerate(self.relay_list()):
            variable = password_variable(relay.name)
            if variable in seen:
                other, name = seen[variable]
                clash = (
                    f"is relay {other + 1}'s name already"
                    if name == relay.name
                    else f"gives the same password variable as relay {other + 1}'s {name!r}"
                )
                raise RelayConflict(
                    index, "name", f"{relay.name!r} {clash}; give each relay a name of its own"
                )
            seen[variable] = (index, relay.name)
        return self

    def relay_list(self) -> list[RelaySettings]:
        """The servers a send goes through: each [[smtp.relays]] entry, or [smtp]
        itself when none is listed."""
        if not self.relays:
            return [RelaySettings(f"{self.host}:{self.port}", self)]
        return [self._resolve(relay) for relay in self.relays]

    def _resolve(self, relay: RelaySection) -> RelaySettings:
        own = {key: getattr(relay, key) for key in RELAY_FIELDS}
        for key in INHERITED:
            if own[key] is None:
                own[key] = getattr(self, key)
        settings = self.model_copy(update={**own, "relays": []})
        return RelaySettings(relay.name or f"{settings.host}:{settings.port}", settings)


class ScheduleSection(Section):
    late_after: dt.timedelta = Field(
        dt.timedelta(hours=6),
        description="how long past its time a scheduled send may still start on its own",
    )
    check_every: dt.timedelta = Field(
        dt.timedelta(seconds=30), description="how often the worker looks for due sends"
    )

    @field_validator("late_after", "check_every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return duration(value) if isinstance(value, str) else value


class DkimSection(Section):
    selector: OneLine | None = None
    domain: OneLine | None = None
    key_file: str | None = Field(None, description="PEM private key, kept out of git")
    # Unset: as many as pay on this machine (mail/signers.py, `how_many`).
    processes: int | None = Field(None, ge=0, le=32, description="signing processes; 0: none")

    @property
    def configured(self) -> bool:
        """Any of the three set: the key is to be loaded (and checked), or it is an error."""
        return bool(self.key_file or self.selector or self.domain)


class DatabaseSection(Section):
    url: str = "sqlite:///subscribers.db"


class WebSection(Section):
    secret_key: SecretStr | None = None
    consent_text: str = Field(
        "Yes, send me {name} by email. I can unsubscribe at any time with one click.",
        min_length=10,
        max_length=500,
    )
    confirm_days: int = Field(7, ge=1, le=90, description="days a confirmation link works")
    welcome_email: bool = True
    cors_origins: list[WebUrl] = []
    limit_per_ip: str = Field("20/minute", description="signups from one IP address")
    limit_per_address: str = Field("5/hour", description="signups for one address")
    confirmations_per_day: int = Field(3, ge=1, le=50)
    max_body_bytes: int = Field(16_384, ge=1024, le=1_048_576)
    # Confirmation and welcome mails wait in the outbox; `serve` delivers it this often
    # (and at once after a signup), retrying a refused or unreachable server.
    outbox_interval: float = Field(5.0, gt=0, le=3600, description="seconds between rounds")
    outbox_max_attempts: int = Field(
        10, ge=1, le=100, description="refusals (4xx) before a mail is given up"
    )

    @field_validator("limit_per_ip", "limit_per_address")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate; expected e.g. '20/minute' or '5 per hour'"
            ) from None
        return value


class BouncesSection(Section):
    address: EmailStr | None = Field(
        None, description="the mailbox bounces come back to; turns on VERP envelope senders"
    )
    # One permanent failure is enough, as with [smtp] bounce_limit = 1 for a refusal at
    # send time; soft bounces (0.5) add up only within reset_after_days of each other.
    threshold: float = Field(1.0, gt=0, le=100, description="bounce score that stops a reader")
    reset_after_days: int = Field(7, ge=1, le=365, description="days without bounces that reset")
    maildir: str | None = Field(None, description="a local Maildir that bounces are delivered to")
    imap_host: OneLine | None = None
    fetch_every: float = Field(300.0, ge=5, description="seconds between two looks at the mailbox")
    imap_port: int = Field(993, ge=1, le=65535)
    imap_user: OneLine | None = None
    imap_folder: OneLine = "INBOX"
    imap_ca_file: str | None = Field(None, description="a CA bundle to trust, for a private server")
    password: SecretStr | None = None
    move_to: OneLine | None = Field(
        None, description="a folder processed messages move to; without it they are marked read"
    )

    @field_validator("address")
    @classmethod
    def _verp_fits(cls, value: str | None) -> str | None:
        if value is None:
            return value
        local = value.rsplit("@", 1)[0]
        if not value.isascii() or "+" in local or len(local) > 20:
            raise ValueError(
                f"{value!r}: expected a plain ASCII address whose part before the @ has at "
                "most 20 characters and no '+' (a token is added after a '+')"
            )
        return value


def zone(name: str) -> dt.tzinfo:
    """An IANA time zone; UTC needs no time zone database."""
    if name.upper() in ("UTC", "Z"):
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not an IANA time zone name; expected e.g. UTC, Europe/Berlin "
            "or America/New_York"
        ) from None


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> dt.timedelta:
    """A duration written as a number and a unit: 90s, 30m, 6h, 2d."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text.lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration; expected e.g. 30m, 6h or 2d")
    return dt.timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
