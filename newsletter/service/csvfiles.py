"""Subscriber CSV files: reading rows to import, writing an export.

Kept out of storage so that the repository knows nothing of file formats.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TextIO

from newsletter.errors import NewsletterError
from newsletter.service import csvformats as formats
from newsletter.storage.models import Status
from newsletter.storage.subscribers import (
    MAX_PART,
    ImportReport,
    Incoming,
    SubscriberError,
    clean_name,
    normalize_email,
)

# What `subscribers export` writes; it imports back to the same data.
HEADER = [
    "email", "name", "first_name", "last_name", "status", "created_at", "confirmed_at",
    "consent_at", "unsubscribed_at", "consent_source", "attributes",
]  # fmt: skip
DELIMITERS = ",;\t"
DATES = ("signed_up", "confirmed", "consented", "left")


class CsvFileError(NewsletterError):
    """The file cannot be read as CSV from `line` on (the rows before it were fine)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class Row(NamedTuple):
    line: int  # where the record starts in the file
    incoming: Incoming


@dataclass
class Layout:
    """How a file's columns map to what we keep."""

    tool: str
    headers: list[str]
    columns: dict[str, int] = field(default_factory=dict)  # field → column
    kept: dict[int, str] = field(default_factory=dict)  # column → attribute name
    ignored: dict[str, list[str]] = field(default_factory=dict)  # reason → headers

    def cells(self, values: list[str]) -> Callable[[str], str]:
        def cell(name: str) -> str:
            index = self.columns.get(name)
            # Spaces only: a line break or control character is refused, never trimmed.
            return values[index].strip(" ") if index is not None and index < len(values) else ""

        return cell


def read_rows(path: Path, report: ImportReport) -> Iterator[Row]:
    """The file's valid rows, lazily; each invalid row goes to `report.errors` by its
    line, and what the header row says (tool, kept and ignored columns) to `report`.
    Raises CsvFileError where the file itself is broken."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CsvFileError(
            f"{path}: cannot be read ({exc.strerror}); check the path", line=0
        ) from None
    first_line: dict[str, int] = {}
    with handle:
        lines = _text_lines(path, handle)
        skipped, header, delimiter = _header_line(lines)
        reader = csv.reader(_chain(header, lines), delimiter=delimiter, strict=True)
        line = skipped + 1
        try:
            layout = _layout(path, next(reader, []), line, report)
            report.delimiter = delimiter
            while True:
                line = reader.line_num + skipped + 1
                values = next(reader, None)
                if values is None:
                    break
                row = _row(path, line, values, layout, report.errors)
                if row is None:
                    continue
                address = row.incoming.address
                if address in first_line:
                    report.errors.append(
                        f"{path}:{line}: {address}: repeats line {first_line[address]}; "
                        "keep one row per address"
                    )
                    continue
                first_line[address] = line
                yield row
        except csv.Error as exc:
            raise CsvFileError(
                f"{path}:{line}: CSV error ({exc}); fix the row that starts here", line=line
            ) from None


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _header_line(lines: Iterator[str]) -> tuple[int, str, str]:
    """(lines before the header, the header line, the delimiter). Excel's 'sep=;'
    first line names the delimiter; otherwise the header row is sniffed."""
    first = next(lines, "")
    hint = re.fullmatch(r"sep=(.)\r?\n?", first)
    if hint:
        return 1, next(lines, ""), hint.group(1)
    return 0, first, sniff_delimiter(first)


def sniff_delimiter(header: str) -> str:
    """Comma, semicolon or tab: csv.Sniffer's guess if it splits the header row, else
    the one found most often in it (a comma when none is: a one-column file)."""
    try:
        found = csv.Sniffer().sniff(header, delimiters=DELIMITERS).delimiter
    except csv.Error:
        found = ""
    if found and len(next(csv.reader([header], delimiter=found), [])) > 1:
        return found
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _layout(path: Path, headers: list[str], line: int, report: ImportReport) -> Layout:
    names = [formats.normalize_header(h) for h in headers]
    layout = Layout(formats.detect_tool(set(names)), [h.strip() for h in headers])
    for index, name in enumerate(names):
        shown = layout.headers[index] or f"column {index + 1}"
        wanted = formats.FIELD_OF.get(name)
        if not name:
            reason = "no header"
        elif wanted and wanted not in layout.columns:
            layout.columns[wanted] = index
            continue
        elif wanted or name in layout.kept.values():
            reason = "a repeated column; the first one is used"
        elif name in formats.BOOKKEEPING:
            reason = f"{layout.tool or 'the other tool'}'s own bookkeeping"
        else:
            layout.kept[index] = name
            continue
        layout.ignored.setdefault(reason, []).append(shown)
    if "email" not in layout.columns:
        raise CsvFileError(
            f"{path}:{line}: no email column in the header row; expected a header like "
            "email,name,status (Email Address and email_address work too)",
            line=line,
        )
    report.source_format = layout.tool
    report.kept_columns = [layout.headers[i] for i in layout.kept]
    report.ignored_columns = [f"{', '.join(h)} ({why})" for why, h in layout.ignored.items()]
    return layout


def _row(path: Path, line: int, values: list[str], layout: Layout, errors: list[str]):
    if not any(v.strip() for v in values):
        return None  # a blank line
    cell = layout.cells(values)
    try:
        incoming = Incoming(
            address=normalize_email(cell("email")),
            **_names(cell),
            status=_status(cell, layout.tool),
            attributes=_attributes(values, layout, cell),
            **_dates(cell, layout),
            consent_source=clean_name(cell("consent_source"), 500, "consent_source") or None,
        )
    except SubscriberError as exc:
        errors.append(f"{path}:{line}: {exc}")
        return None
    return Row(line, incoming)


def _names(cell: Callable[[str], str]) -> dict:
    first = clean_name(cell("first_name"), MAX_PART, "first name")
    last = clean_name(cell("last_name"), MAX_PART, "last name")
    name = clean_name(cell("name")) or clean_name(" ".join(p for p in (first, last) if p))
    return {"name": name, "first_name": first or None, "last_name": last or None}


def _status(cell: Callable[[str], str], tool: str) -> Status | None:
    """The status column's word; without one, what the export says otherwise: a
    cleaned (bounced) time, an unsubscribe time, or a "not subscribed" flag."""
    raw = cell("status")
    if raw:
        status = formats.status_word(raw, tool)
        if status is None:
            raise SubscriberError(
                f"status {raw!r} is not known; expected active, pending, unsubscribed or "
                "bounced (or another tool's word for one, like cleaned or cancelled)"
            )
        return status
    if cell("cleaned"):
        return Status.bounced
    subscribed, disabled = formats.flag(cell("subscribed")), formats.flag(cell("disabled"))
    if cell("left") or subscribed is False or disabled is True:
        return Status.unsubscribed
    return None


def _dates(cell: Callable[[str], str], layout: Layout) -> dict:
    dates = {}
    for name in (*DATES, "cleaned"):
        raw = cell(name)
        if not raw:
            continue
        try:
            dates[name] = formats.parse_date(raw)
        except ValueError:
            header = layout.headers[layout.columns[name]]
            raise SubscriberError(
                f"{header} {raw!r} is not a date; expected e.g. 2024-05-01 or 2024-05-01T09:30:00Z"
            ) from None
    cleaned = dates.pop("cleaned", None)
    dates.setdefault("left", cleaned)
    return dates


def _attributes(values: list[str], layout: Layout, cell: Callable[[str], str]) -> dict | None:
    """The custom columns, and a JSON object column (listmonk, Buttondown, ours) merged in."""
    attributes: dict = {}
    raw = cell("attributes")
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            attributes.update(parsed)
        else:
            attributes[formats.normalize_header(layout.headers[layout.columns["attributes"]])] = raw
    for index, name in layout.kept.items():
        if index < len(values) and values[index].strip():
            attributes[name] = values[index].strip()
    return attributes or None


def _text_lines(path: Path, handle) -> Iterator[str]:
    for number, raw in enumerate(handle, 1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise CsvFileError(
                f"{path}:{number}: is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the "
                "file as UTF-8 CSV",
                line=number,
            ) from None


def write_rows(path: Path, rows: Iterable[list[str]]) -> int:
    """Write HEADER and `rows` to `path` ('-': standard output); returns how many
    rows. A file is written whole or not at all."""
    if str(path) == "-":
        return _write(sys.stdout, rows)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            count = _write(handle, rows)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CsvFileError(
            f"{path}: cannot be written ({exc.strerror}); choose a file in a folder you can "
            "write to",
            line=0,
        ) from None
    return count


def _write(handle: TextIO, rows: Iterable[list[str]]) -> int:
    writer = csv.writer(handle)
    writer.writerow(HEADER)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count
