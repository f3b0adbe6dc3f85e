"""The delivery sections of newsletter.toml ([smtp], [schedule], [dkim], [database],
[web], [bounces]) and the value types they share; newsletter.config assembles them."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr, field_validator

from newsletter.fields import OneLine, WebUrl

# A host name as EHLO wants it (RFC 5321 4.1.2): letters, digits and inner hyphens,
# dot-separated; or an address literal such as [192.0.2.1].
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.Iv]+\])$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SmtpSection(Section):
    host: OneLine = "localhost"
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
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
        ge=1,
        description="seconds a sender holds the deliveries it claimed before others may "
        "take them over (renewed while it is alive)",
    )
    helo_name: OneLine | None = Field(
        None, description="the name this machine gives in EHLO; default: its own host name"
    )

    @field_validator("helo_name")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not HOSTNAME.match(value)):
            raise ValueError(
                f"{value!r} is not a host name; expected this machine's name as the "
                "internet knows it, e.g. mail.example.com"
            )
        return value


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
