"""One issue file: YAML front matter for the structured sections, Markdown for
the articles. `FrontMatter` is the single definition of what the file may say;
every mistake is reported as `FILE:LINE: field: what is wrong; what is expected`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from newsletter.compose import content
from newsletter.errors import NewsletterError, shown
from newsletter.fields import (
    OneLine,
    Text,
    WebUrl,
    describe_control,
    dotted,
    explain,
    first_control,
)

MAX_BYTES = 1_000_000
# The deepest real field is four levels down (fields → quotes → item → text);
# a cap far below Python's recursion limit keeps hostile nesting a plain error.
MAX_DEPTH = 20
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
# "We are #1" in YAML is "We are" plus a comment. A real comment has a space after '#'.
_CUT_BY_COMMENT = re.compile(r"^[ \t]+#[^\s#]")


class IssueError(NewsletterError):
    """An issue file cannot be read or does not follow the schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class OnThisDate(_Strict):
    year: int = Field(ge=1, le=2200)
    text: Text = Field(min_length=1, max_length=1000)
    link: WebUrl | None = None


class ThemeSong(_Strict):
    title: OneLine = Field(min_length=1, max_length=200)
    artist: OneLine = Field(min_length=1, max_length=200)
    url: WebUrl
    note: Text = Field("", max_length=2000)


class QuoteItem(_Strict):
    text: Text = Field(min_length=1, max_length=2000)
    author: OneLine = Field(min_length=1, max_length=200)
    source: WebUrl | None = None


class FrontMatter(_Strict):
    title: OneLine = Field(min_length=1, max_length=150)
    date: dt.date
    subject: OneLine | None = Field(None, min_length=1, max_length=200)
    preheader: OneLine | None = Field(None, min_length=1, max_length=200)
    on_this_date: OnThisDate | None = None
    theme_song: ThemeSong | None = None
    quotes: list[QuoteItem] = []
    closing: Text | None = Field(None, max_length=5000)


@dataclass(frozen=True)
class Issue:
    path: Path
    slug: str
    meta: FrontMatter
    body: content.Body
    source: str
    body_line: int
    lines: dict[tuple, int]  # front-matter field → file line

    def line_of(self, *field: str | int) -> int:
        return self.lines.get(field, 1)


class _Loader(yaml.SafeLoader):
    """Safe YAML that leaves dates as text, so that pydantic (not a YAML
    constructor exception) reports a date like 2026-13-01; and that refuses,
    before building anything, anchors and aliases (a few lines of them expand to
    gigabytes, and an issue never needs them) and nesting deeper than MAX_DEPTH."""

    def __init__(self, stream: str, path: Path) -> None:
        super().__init__(stream)
        self.path = path
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        alias = isinstance(event, yaml.AliasEvent)
        if alias or getattr(event, "anchor", None):
            raise _alias_error(self.path, event.start_mark, "alias" if alias else "anchor")
        if self.depth >= MAX_DEPTH:
            raise IssueError(
                f"{self.path}:{event.start_mark.line + 2}: front matter: is nested more than "
                f"{MAX_DEPTH} levels deep; expected 'key: value' fields with lists a level or "
                "two below them"
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_issue(path: Path) -> Issue:
    text = _read(path)
    _refuse_controls(path, text)
    front, body, body_line = _split(path, text)
    data, lines = _parse_front(path, front)
    try:
        meta = FrontMatter.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(path, exc, lines) from None
    try:
        body_parts = content.parse_body(body)
    except content.ContentError as exc:
        raise IssueError(f"{path}:{body_line + exc.line - 1}: {exc}") from None
    if not body_parts.articles:
        raise IssueError(
            f"{path}:{body_line}: body: has no articles; expected at least one "
            "'## Heading' line followed by its text"
        )
    if not _SLUG.match(path.stem):
        raise IssueError(
            f"{path}: the file name {path.stem!r} becomes the issue's web address; rename it "
            "to lowercase letters, digits and hyphens, like 2026-11-30-b2b-flip-flop.md"
        )
    return Issue(path, path.stem, meta, body_parts, text, body_line, lines)


def issue_files(root: Path) -> list[Path]:
    """Every issue in the folder's issues/, oldest first, as the editor would type them."""
    paths = sorted((root / "issues").glob("*.md"))
    if not paths:
        raise IssueError(f"{shown(root / 'issues')}: has no issues yet; run 'newsletter new'")
    return [Path(shown(p)) for p in paths]


def _read(path: Path) -> str:
    if path.is_dir():
        raise IssueError(f"{path}: is a folder; name an issue file inside it, like {path}/…md")
    try:
        size = path.stat().st_size
    except OSError:
        raise IssueError(
            f"{path}: no such issue file; check the path, or run 'newsletter new' to start one"
        ) from None
    if size > MAX_BYTES:
        raise IssueError(
            f"{path}: is {size / 1e6:.1f} MB; an issue must be under {MAX_BYTES // 1_000_000} MB, "
            "so link to large material instead of pasting it in"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IssueError(
            f"{path}: cannot be read ({exc.strerror}); expected an issue file you can read"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise IssueError(
            f"{path}:{line}: is not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if not text.strip():
        raise IssueError(
            f"{path}:1: the file is empty; expected front matter between two '---' lines, then "
            "the articles (run 'newsletter new' for a filled-in template)"
        )
    return text


def _refuse_controls(path: Path, text: str) -> None:
    """A terminal escape or a NUL pasted into the file would otherwise surface
    as a YAML or MJML error that names neither the line nor the character."""
    found = first_control(text)
    if found:
        line = text.count("\n", 0, found.start()) + 1
        raise IssueError(f"{path}:{line}: contains {describe_control(found.group())}; delete it")


def _split(path: Path, text: str) -> tuple[str, str, int]:
    lines = text.split("\n")
    if lines[0].strip() != "---":
        raise IssueError(
            f"{path}:1: front matter: the file must start with a '---' line; expected YAML "
            "front matter (title, date, …) between two '---' lines"
        )
    for end in range(1, len(lines)):
        if lines[end].rstrip() in ("---", "..."):
            return "\n".join(lines[1:end]), "\n".join(lines[end + 1 :]), end + 2
    raise IssueError(
        f"{path}:1: front matter: no closing '---' line; add one after the last front-matter field"
    )


def _parse_front(path: Path, front: str) -> tuple[dict[str, Any], dict[tuple, int]]:
    try:
        node, data = _compose_and_load(path, front)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from None
    except RecursionError:  # MAX_DEPTH should stop it first; never a traceback regardless
        raise IssueError(
            f"{path}:2: front matter: is nested too deeply; expected 'key: value' fields"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise IssueError(
            f"{path}:2: front matter: is not a set of fields; expected 'key: value' lines "
            "such as 'title: …' and 'date: …'"
        )
    lines: dict[tuple, int] = {}
    if node is not None:
        _walk(path, node, (), lines, front.split("\n"))
    return data, lines


def _compose_and_load(path: Path, front: str) -> tuple[yaml.Node | None, Any]:
    """One parse gives both the nodes (for line numbers) and the data."""
    loader = _Loader(front, path)  # reads, and checks every character, at once
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def _alias_error(path: Path, mark: yaml.Mark, kind: str) -> IssueError:
    sign = "*" if kind == "alias" else "&"
    return IssueError(
        f"{path}:{mark.line + 2}: front matter: a value starting with {sign!r} is a YAML {kind}, "
        "which issues do not use; put the text in quotes, or write the value out in full"
    )


def _yaml_error(path: Path, exc: yaml.YAMLError) -> IssueError:
    if not isinstance(exc, yaml.MarkedYAMLError):  # _refuse_controls leaves none known
        return IssueError(
            f"{path}:2: front matter: cannot be read as YAML ({exc}); expected 'key: value' lines"
        )
    for kind in ("alias", "anchor"):
        if exc.context == f"while scanning an {kind}" and exc.context_mark:
            return _alias_error(path, exc.context_mark, kind)  # e.g. a title of *Bold*
    # For an unclosed quote the problem is at the end of the file; the quote
    # itself is where the scanner says it started.
    quoted = "quoted scalar" in (exc.context or "")
    mark = (exc.context_mark if quoted else None) or exc.problem_mark or exc.context_mark
    line = mark.line + 2 if mark else 2
    return IssueError(
        f"{path}:{line}: front matter: YAML syntax error ({exc.problem}); expected "
        "'key: value' lines, with text that holds ': ' or '#' in quotes"
    )


def _walk(path: Path, node: yaml.Node, at: tuple, lines: dict[tuple, int], text: list[str]) -> None:
    """Record the file line of every key and list item. Refuse what YAML would
    otherwise drop silently: a repeated key, and text after ' #' in a value."""
    lines.setdefault(at, node.start_mark.line + 2)
    if isinstance(node, yaml.ScalarNode) and node.style is None and at:
        rest = text[node.end_mark.line][node.end_mark.column :]
        if _CUT_BY_COMMENT.match(rest):
            raise IssueError(
                f"{path}:{node.end_mark.line + 2}: {dotted(at)}: the text after ' #' would be "
                "read as a YAML comment and dropped; put the whole value in quotes"
            )
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            where = (*at, key.value)
            if where in lines:
                raise IssueError(
                    f"{path}:{key.start_mark.line + 2}: {dotted(where)}: is given twice "
                    f"(first on line {lines[where]}); keep one"
                )
            lines[where] = key.start_mark.line + 2
            _walk(path, value, where, lines, text)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(path, item, (*at, index), lines, text)


def _schema_error(path: Path, exc: ValidationError, lines: dict[tuple, int]) -> IssueError:
    messages = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
        what = explain(error, FrontMatter)
        todo = str(error.get("input", "")).strip().upper().startswith("TODO")
        if loc == ("on_this_date", "year") and (todo or error["type"] != "int_parsing"):
            # A year: not "your own text", not "a value greater than or equal to 1".
            head = what.split(";")[0]
            if error["type"].startswith(("greater_than", "less_than")):
                head = f"{error['input']!r} is not a year from 1 to 2200"
            what = f"{head}; write the year as a number, like 1839"
        messages.append(f"{path}:{line}: {dotted(loc)}: {what}")
    return IssueError(messages[0], details=messages)
