"""newsletter.toml, validated: the one description of a newsletter folder.

Values come from three places, later ones winning: newsletter.toml, the
git-ignored secrets.toml beside it, and NEWSLETTER_<SECTION>_<KEY>
environment variables. Secrets are refused in newsletter.toml, which is
meant to be committed.
"""

from __future__ import annotations

import datetime as dt
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
    ValidationError,
    field_validator,
)

from newsletter.errors import NewsletterError
from newsletter.fields import OneLine, WebUrl, dotted, explain
from newsletter.sections import (
    BouncesSection,
    DatabaseSection,
    DkimSection,
    ScheduleSection,
    SmtpSection,
    WebSection,
    password_variable,
    zone,
)

CONFIG_FILE = "newsletter.toml"
SECRETS_FILE = "secrets.toml"
ENV_PREFIX = "NEWSLETTER_"
SECRETS = {"smtp": {"password"}, "web": {"secret_key"}, "bounces": {"password"}}
# NEWSLETTER_* variables that are not config keys.
OTHER_VARIABLES = {"NEWSLETTER_CONFIG", "NEWSLETTER_CHROMIUM", "NEWSLETTER_REQUIRE_BROWSER"}
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
    timezone: str = Field("UTC", description="an IANA time zone name like Europe/Berlin")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value

    @property
    def tzinfo(self) -> dt.tzinfo:
        """The zone a time without an offset (`send --at`) means, and `status` shows."""
        return zone(self.timezone)


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


class Config(_Section):
    newsletter: NewsletterSection
    sender: SenderSection
    signature: SignatureSection
    smtp: SmtpSection = SmtpSection()
    database: DatabaseSection = DatabaseSection()
    web: WebSection = WebSection()
    dkim: DkimSection = DkimSection()
    schedule: ScheduleSection = ScheduleSection()
    bounces: BouncesSection = BouncesSection()

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
    _refuse_relay_passwords(path, text, data)
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
    relay_passwords: dict[str, str] = {}
    for section, key, value, var in _from_env(environ):
        if section == "smtp" and key.startswith("relay_") and key.endswith("_password"):
            relay_passwords[var] = value
            continue
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            continue
        data[section][key] = value
        sources[f"{section}.{key}"] = (var, "")
    _give_relay_passwords(data, relay_passwords)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, sources) from None
    config._root = path.parent.resolve()
    config._sources = sources
    return config


def _relay_entries(data: dict[str, Any]) -> list[dict[str, Any]]:
    smtp = data.get("smtp")
    relays = smtp.get("relays") if isinstance(smtp, dict) else None
    return [r for r in relays if isinstance(r, dict)] if isinstance(relays, list) else []


def _refuse_relay_passwords(path: Path, text: str, data: dict[str, Any]) -> None:
    for index, relay in enumerate(_relay_entries(data)):
        if "password" in relay:
            raise ConfigError(
                f"{path}:{_relay_line(text, index, 'password')}: smtp.relays[{index + 1}]."
                f"password: secrets do not belong in {CONFIG_FILE}; set "
                f"{password_variable(_relay_name(data, relay))} instead"
            )


def _relay_name(data: dict[str, Any], relay: dict[str, Any]) -> str:
    """A relay's name before validation, as SmtpSection.relay_list will give it."""
    if relay.get("name"):
        return str(relay["name"]).strip()
    port = relay.get("port", data["smtp"].get("port", SmtpSection.model_fields["port"].default))
    return f"{str(relay.get('host', '')).strip()}:{str(port).strip()}"


def _give_relay_passwords(data: dict[str, Any], passwords: dict[str, str]) -> None:
    """NEWSLETTER_SMTP_RELAY_<NAME>_PASSWORD into the [[smtp.relays]] entry it names."""
    relays = {password_variable(_relay_name(data, r)): r for r in _relay_entries(data)}
    for var, value in passwords.items():
        if var not in relays:
            names = ", ".join(sorted(relays)) or "none, as no [[smtp.relays]] are listed"
            raise ConfigError(
                f"{var}: no relay in [[smtp.relays]] has this password variable (theirs: "
                f"{names}); fix the variable's name or the relay's name"
            )
        relays[var]["password"] = value


def _relay_line(text: str, index: int, key: str) -> int:
    """The line of `key` in the index-th [[smtp.relays]] entry (its header without it)."""
    lines = text.splitlines()
    headers = [n for n, line in enumerate(lines, 1) if line.strip() == "[[smtp.relays]]"]
    if index >= len(headers):
        return _line_of(text, "smtp", "relays")
    start = headers[index]
    for number in range(start + 1, len(lines) + 1):
        stripped = lines[number - 1].strip()
        if stripped.startswith("["):
            break
        if key and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return start


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
        # A clash between relays names the entry and field it is found at.
        loc = tuple(error["loc"]) + getattr(error.get("ctx", {}).get("error"), "loc", ())
        field = dotted(loc)
        source_key = f"{loc[0]}.{loc[1]}" if len(loc) > 1 else ""
        path, text = sources.get(source_key, sources[""])
        relay = loc[:2] == ("smtp", "relays") and len(loc) > 2 and isinstance(loc[2], int)
        if not text:  # from an environment variable, whose name says where it is
            where = path
        elif relay:
            where = f"{path}:{_relay_line(text, loc[2], str(loc[3]) if len(loc) > 3 else '')}"
        else:
            line = _line_of(text, str(loc[0]), str(loc[1]) if len(loc) > 1 else "")
            where = f"{path}:{line}"
        secret = len(loc) > 1 and str(loc[1]) in SECRETS.get(str(loc[0]), set())
        secret = secret or (relay and loc[-1] == "password")
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
