"""`newsletter init` (a new newsletter folder) and `newsletter new` (next week's issue)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import secrets
import shutil
import tomllib
import unicodedata
from dataclasses import dataclass, fields
from pathlib import Path

import jinja2

from newsletter.compose.render import derived_subject
from newsletter.config import CONFIG_FILE, SECRETS_FILE, WEEKDAYS, Config
from newsletter.errors import NewsletterError
from newsletter.fields import explain

DEFAULTS = Path(__file__).parent.parent / "defaults"
EXAMPLE_ISSUE = DEFAULTS / "issues" / "2026-11-24-survival-of-the-fittest-funnel.md"


class ScaffoldError(NewsletterError):
    """init or new would overwrite something, or got a bad date or title."""


@dataclass(frozen=True)
class Identity:
    """Who the newsletter is: what `init` asks for. None keeps the demo's value."""

    name: str | None = None
    from_address: str | None = None
    from_name: str | None = None
    postal_address: str | None = None
    base_url: str | None = None

    @property
    def missing(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is None]

    def completed(self) -> Identity:
        """A new sender without a name of their own signs with the newsletter's name
        (as the prompt suggests), never with the demo person's."""
        if self.from_name is not None or self.from_address is None:
            return self
        if self.name is not None:
            return dataclasses.replace(self, from_name=self.name)
        demo = tomllib.loads((DEFAULTS / CONFIG_FILE).read_text(encoding="utf-8"))
        return dataclasses.replace(self, from_name=demo["newsletter"]["name"])


# The flag (and the prompt's field) each setting comes from, for messages.
FLAGS = {
    ("newsletter", "name"): "--name",
    ("newsletter", "postal_address"): "--postal-address",
    ("sender", "from_address"): "--from-address",
    ("sender", "from_name"): "--from-name",
    ("signature", "name"): "--from-name",
    ("signature", "email"): "--from-address",
    ("newsletter", "base_url"): "--base-url",
}


def config_text(identity: Identity) -> str:
    """The demo's newsletter.toml with the given identity in place of the demo's,
    validated: a bad value is refused before anything is written."""
    text = (DEFAULTS / CONFIG_FILE).read_text(encoding="utf-8")
    changes: dict[tuple[str, str], str | None] = {}
    if identity.name is not None:
        changes |= {("newsletter", "name"): identity.name, ("newsletter", "tagline"): ""}
    if identity.postal_address is not None:
        changes[("newsletter", "postal_address")] = " ".join(identity.postal_address.split())
    if identity.from_address is not None:
        address = identity.from_address.strip()
        # Replies go to the From address unless the editor sets reply_to.
        changes |= {("sender", "from_address"): address, ("sender", "reply_to"): None}
        changes[("signature", "email")] = address
    identity = identity.completed()
    if identity.base_url is not None:
        changes[("newsletter", "base_url")] = identity.base_url.strip().rstrip("/")
    if identity.from_name is not None:
        changes |= {("sender", "from_name"): identity.from_name}
        changes[("signature", "name")] = identity.from_name
        # The demo's title and links are the demo person's.
        changes |= {("signature", "title"): None, ("signature", "links"): None}
    text = _with_values(text, changes)
    _validate(text)
    return text


def _with_values(text: str, changes: dict[tuple[str, str], str | None]) -> str:
    """Set `key = "value"` lines under their [section]; None comments the line out
    (a multi-line value, such as the links list, becomes empty)."""
    out: list[str] = []
    section, skipping = "", False
    for line in text.splitlines(keepends=True):
        if skipping:
            skipping = line.strip() != "]"
            continue
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            section = stripped.strip("[]").strip()
        key = stripped.split("=", 1)[0].strip() if "=" in stripped else ""
        if (section, key) in changes and not stripped.startswith("#"):
            value = changes[(section, key)]
            skipping = stripped.endswith("[")
            if key == "links":
                line = "links = []\n"
            elif value is None:
                line = f"# {stripped}\n"
            else:
                # A JSON string is a valid TOML basic string (quotes, backslashes escaped).
                line = f"{key} = {json.dumps(value, ensure_ascii=False)}\n"
        out.append(line)
    return "".join(out)


def _validate(text: str) -> None:
    from pydantic import ValidationError

    try:
        Config.model_validate(tomllib.loads(text))
    except ValidationError as exc:
        error = exc.errors()[0]
        flag = FLAGS.get(tuple(error["loc"][:2]), ".".join(map(str, error["loc"])))
        what = explain(error, Config)
        if error["type"] == "string_too_short" and str(error["input"]).strip():
            what = f"{error['input']!r} is too short; expected a full postal address"
        raise ScaffoldError(f"{flag}: {what}") from None


def init(folder: Path, identity: Identity | None = None) -> list[Path]:
    """A ready-to-edit newsletter folder; returns what it created. Without an
    identity, the folder gets the demo's name, From and postal address."""
    if (folder / CONFIG_FILE).exists():
        raise ScaffoldError(
            f"{folder / CONFIG_FILE}: already exists; this folder is a newsletter already "
            "(choose another folder to start a new one)"
        )
    text = config_text(identity or Identity())
    try:
        created = _init(folder, text)
    except OSError as exc:
        raise ScaffoldError(
            f"{exc.filename or folder}: cannot create it ({exc.strerror}); choose a folder "
            "you can write to"
        ) from None
    return created + _create_database(folder)


def _create_database(folder: Path) -> list[Path]:
    """The folder's own SQLite database, migrated: every other command refuses a
    missing one, so that a typo'd path cannot start an empty list."""
    # Imported here: the database stack is not needed by the other compose commands.
    from newsletter.config import load_config
    from newsletter.storage import db

    # The folder's file alone decides (not NEWSLETTER_* variables of the shell):
    # a fresh folder's database is its subscribers.db.
    config = load_config(folder / CONFIG_FILE, environ={})
    path = db.sqlite_file(db.resolve_url(config.database.url, config.root))
    existed = path is None or path.exists()
    db.connect(config, create=True).dispose()
    return [] if existed else [path]


def _init(folder: Path, config_text: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    created = [folder / CONFIG_FILE]
    (folder / CONFIG_FILE).write_text(config_text, encoding="utf-8")
    secret_file = folder / SECRETS_FILE
    if not secret_file.exists():
        # Created 0600 from the start: never readable by others, not even for a moment.
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(
                "# Secrets: git-ignored, never commit this file.\n"
                "[web]\n"
                f'secret_key = "{secrets.token_urlsafe(32)}"\n'
                '\n# [smtp]\n# password = "…"\n'
            )
        created.append(secret_file)
    ignore = folder / ".gitignore"
    lines = ignore.read_text(encoding="utf-8").splitlines() if ignore.exists() else []
    wanted = (DEFAULTS / "gitignore").read_text(encoding="utf-8").splitlines()
    missing = [w for w in wanted if w not in lines]
    if missing:
        ignore.write_text("\n".join(lines + missing) + "\n", encoding="utf-8")
        created.append(ignore)
    templates = folder / "templates"
    if not templates.exists():
        shutil.copytree(DEFAULTS / "templates", templates)
        created.append(templates)
    issues = folder / "issues"
    issues.mkdir(exist_ok=True)
    example = issues / EXAMPLE_ISSUE.name
    if not example.exists():
        shutil.copyfile(EXAMPLE_ISSUE, example)
        created.append(example)
    return created


def next_issue_date(config: Config, today: dt.date) -> dt.date:
    """The next publishing weekday on or after today that has no issue yet."""
    weekday = WEEKDAYS.index(config.newsletter.weekday)
    date = today + dt.timedelta(days=(weekday - today.weekday()) % 7)
    taken = {p.name[:10] for p in (config.root / "issues").glob("*.md")}
    while date.isoformat() in taken:
        date += dt.timedelta(days=7)
    return date


def parse_date(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ScaffoldError(
            f"--date: {value!r} is not a real date; expected YYYY-MM-DD, like 2026-12-01"
        ) from None


def slugify(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:60].rstrip("-")


def new_issue(config: Config, *, date: dt.date | None, title: str | None, today: dt.date) -> Path:
    """Write next week's issue file with every section stubbed; never overwrites."""
    date = date or next_issue_date(config, today)
    slug = slugify(title) if title else ""
    path = config.root / "issues" / (f"{date.isoformat()}-{slug}.md" if slug else f"{date}.md")
    if path.exists():
        raise ScaffoldError(
            f"{path}: already exists; edit it, or pass --date or --title for a different file"
        )
    if title and ("\n" in title or "\r" in title):
        raise ScaffoldError("--title: must be a single line; remove the line break")
    shown_title = title or "TODO the week's theme in a few words"
    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True)  # noqa: S701 (YAML)
    template = env.from_string((DEFAULTS / "new-issue.md.j2").read_text(encoding="utf-8"))
    text = template.render(
        title=_yaml_string(shown_title),
        date=date,
        default_subject=derived_subject(config.newsletter.name, shown_title),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as out:  # "x": a race still cannot overwrite
            out.write(text)
    except OSError as exc:
        raise ScaffoldError(
            f"{path}: cannot be written ({exc.strerror}); check the folder's permissions"
        ) from None
    return path


def _yaml_string(value: str) -> str:
    # Titles like "Q4: the plan" would otherwise break the YAML.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
