"""newsletter.toml, validated: the one description of a newsletter folder.

Values come from three places, later ones winning: newsletter.toml, the
git-ignored secrets.toml beside it, and NEWSLETTER_<SECTION>_<KEY>
environment variables. Secrets are refused in newsletter.toml, which is
meant to be committed.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)

from newsletter.errors import NewsletterError
from newsletter.fields import OneLine, WebUrl, dotted, explain

CONFIG_FILE = "newsletter.toml"
SECRETS_FILE = "secrets.toml"
ENV_PREFIX = "NEWSLETTER_"
SECRETS = {"smtp": {"password"}, "web": {"secret_key"}}
# NEWSLETTER_* variables that are not config keys.
OTHER_VARIABLES = {"NEWSLETTER_CONFIG", "NEWSLETTER_CHROMIUM", "NEWSLETTER_REQUIRE_BROWSER"}
# A host name as EHLO wants it (RFC 5321 4.1.2): letters, digits and inner hyphens,
# dot-separated; or an address literal such as [192.0.2.1].
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.Iv]+\])$")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class ConfigError(NewsletterError):
    """newsletter.toml, secrets.toml or a NEWSLETTER_* variable is wrong."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class NewsletterSection(_Section):
    name: OneLine = Field(min_length=1, max_length=120)
    tagline: OneLine = ""
    base_url: WebUrl = Field(
        description="unsubscribe and web-version links start with it, e.g. https://news.example.com"
    )
    postal_address: str = Field(
        min_length=5,
        max_length=300,
        description="the law (CAN-SPAM, and most countries' equivalents) requires a postal "
        "address in every commercial email",
    )
    weekday: Literal[WEEKDAYS] = "tuesday"  # type: ignore[valid-type]
    language: str = Field(
        "en",
        pattern=r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})?$",
        description="a language code like en or pt-BR",
    )
    greeting_fallback: OneLine = Field("there", max_length=60)


class SenderSection(_Section):
    from_name: OneLine = Field(min_length=1, max_length=120)
    from_address: EmailStr = Field(description="every message needs a From address")
    reply_to: EmailStr | None = None

    @field_validator("from_address", "reply_to")
    @classmethod
    def _ascii(cls, value: str | None) -> str | None:
        if value is not None and not value.isascii():
            raise ValueError(
                f"{value!r} is not plain ASCII; write an international domain in its "
                "xn-- (punycode) form"
            )
        return value


class Link(_Section):
    label: OneLine = Field(min_length=1, max_length=80)
    url: WebUrl


class SignatureSection(_Section):
    name: OneLine = Field(min_length=1, max_length=120)
    title: OneLine = ""
    sign_off: OneLine = "Looking forward,"
    email: EmailStr | None = None
    links: list[Link] = []


class SmtpSection(_Section):
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


class DkimSection(_Section):
    selector: OneLine | None = None
    domain: OneLine | None = None
    key_file: str | None = Field(None, description="PEM private key, kept out of git")


class DatabaseSection(_Section):
    url: str = "sqlite:///subscribers.db"


class WebSection(_Section):
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


class Config(_Section):
    newsletter: NewsletterSection
    sender: SenderSection
    signature: SignatureSection
    smtp: SmtpSection = SmtpSection()
    database: DatabaseSection = DatabaseSection()
    web: WebSection = WebSection()
    dkim: DkimSection = DkimSection()

    _root: Path = PrivateAttr(default=Path("."))
    # "section.key" → (file or variable, its text) for the values not from newsletter.toml.
    _sources: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)

    @property
    def root(self) -> Path:
        """The newsletter folder: issues/, templates/ and build/ live here."""
        return self._root

    def where(self, section: str, key: str) -> str:
        """Where a setting is written: 'newsletter.toml:12', or the variable's name."""
        path, text = self._sources.get(f"{section}.{key}") or self._sources.get(
            "", (CONFIG_FILE, "")
        )
        return f"{path}:{_line_of(text, section, key)}" if text else path


def find_config(path: Path | None = None) -> Path:
    """The config to use: --config, then $NEWSLETTER_CONFIG, then ./newsletter.toml."""
    if path is None:
        path = Path(os.environ.get(f"{ENV_PREFIX}CONFIG", CONFIG_FILE))
    if path.is_dir():
        path = path / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such config file; run 'newsletter init' to create a newsletter "
            "folder, or pass --config PATH"
        )
    return path


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> Config:
    path = find_config(path)
    environ = dict(os.environ if environ is None else environ)
    text = _read(path)
    data = _parse_toml(path, text)
    for section, keys in SECRETS.items():
        for key in keys & set(data.get(section, {}) if isinstance(data.get(section), dict) else {}):
            raise ConfigError(
                f"{path}:{_line_of(text, section, key)}: {section}.{key}: secrets do not belong "
                f"in {CONFIG_FILE}; set {ENV_PREFIX}{section.upper()}_{key.upper()} or put it "
                f"in {SECRETS_FILE} (git-ignored)"
            )
    sources: dict[str, tuple[str, str]] = {"": (str(path), text)}
    secrets_path = path.parent / SECRETS_FILE
    if secrets_path.is_file():
        secrets_text = _read(secrets_path)
        secrets = _parse_toml(secrets_path, secrets_text)
        _check_only_secrets(secrets_path, secrets_text, secrets)
        _merge(data, secrets)
        for section, values in secrets.items():
            for key in values:
                sources[f"{section}.{key}"] = (str(secrets_path), secrets_text)
    for section, key, value, var in _from_env(environ):
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            continue
        data[section][key] = value
        sources[f"{section}.{key}"] = (var, "")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, sources) from None
    config._root = path.parent.resolve()
    config._sources = sources
    return config


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: is not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); check the path") from None


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _lineno_from(str(exc))
        reason = str(exc).split(" (at ")[0]
        raise ConfigError(
            f"{path}:{line}: TOML syntax error: {reason}; expected key = value lines "
            "under [section] headers, strings in quotes"
        ) from None


def _lineno_from(message: str) -> int:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else 1


def _check_only_secrets(path: Path, text: str, data: dict[str, Any]) -> None:
    known = [f"{s}.{k}" for s, keys in SECRETS.items() for k in sorted(keys)]
    for section, values in data.items():
        allowed = SECRETS.get(section, set())
        for key in values if isinstance(values, dict) else [""]:
            name = f"{section}.{key}" if key else section
            if key in allowed:
                continue
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            fix = (
                f"did you mean {close[0]!r}?"
                if close
                else f"only {', '.join(known)} belong here; other settings go in {CONFIG_FILE}"
            )
            raise ConfigError(f"{path}:{_line_of(text, section, key)}: {name}: {fix}")


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for section, values in extra.items():
        if not isinstance(into.get(section, {}), dict):
            continue  # newsletter.toml has a plain value here; validation reports it
        into.setdefault(section, {}).update(values)


def _from_env(environ: dict[str, str]):
    sections = sorted(Config.model_fields, key=len, reverse=True)
    for var, value in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or var in OTHER_VARIABLES or not value:
            continue  # an empty variable counts as unset
        rest = var[len(ENV_PREFIX) :].lower()
        for section in sections:
            if rest.startswith(section + "_"):
                yield section, rest[len(section) + 1 :], value, var
                break
        else:
            head = rest.split("_", 1)[0]
            close = difflib.get_close_matches(head, sections, n=1, cutoff=0.75)
            if close:
                raise ConfigError(
                    f"{var}: there is no [{head}] section (did you mean "
                    f"{ENV_PREFIX}{close[0].upper()}_…?); fix the variable's name"
                )


def _line_of(text: str, section: str, key: str) -> int:
    """The line where `key` is set under [section] (1 when it is not written)."""
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            current = stripped.strip("[]").strip()
        elif key and current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().strip("[]").strip() == section:
            return number
    return 1


def _config_error(exc: ValidationError, sources: dict[str, tuple[str, str]]) -> ConfigError:
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        field = dotted(loc)
        source_key = f"{loc[0]}.{loc[1]}" if len(loc) > 1 else ""
        path, text = sources.get(source_key, sources[""])
        if not text:  # from an environment variable, whose name says where it is
            where = path
        else:
            line = _line_of(text, str(loc[0]), str(loc[1]) if len(loc) > 1 else "")
            where = f"{path}:{line}"
        secret = len(loc) > 1 and str(loc[1]) in SECRETS.get(str(loc[0]), set())
        what = explain(error, Config, secret=secret)
        info = getattr(Config.model_fields.get(str(loc[0])), "annotation", None)
        spec = getattr(info, "model_fields", {}).get(str(loc[1])) if len(loc) == 2 else None
        if spec is not None and spec.description:
            if error["type"] == "missing":
                what = f"is missing: {spec.description}; add it"
            elif error["type"] == "string_pattern_mismatch":
                what = f"{error['input']!r} is not {spec.description}"
        if error["type"] == "missing" and len(loc) == 1:
            what = f"section [{loc[0]}] is missing; add it (see 'newsletter init' for an example)"
        lines.append(f"{where}: {field}: {what}")
    return ConfigError(lines[0], details=lines)
