"""Subscriber CSV files: reading rows to import, writing an export.

Kept out of storage so that the repository knows nothing of file formats.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple, TextIO

from newsletter.errors import NewsletterError
from newsletter.storage.models import Status
from newsletter.storage.subscribers import (
    SubscriberError,
    clean_name,
    normalize_email,
    parse_status,
)

HEADER = ["email", "name", "status", "created_at"]


class CsvFileError(NewsletterError):
    """The file cannot be read as CSV from `line` on (the rows before it were fine)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class Row(NamedTuple):
    line: int  # where the record starts in the file
    address: str
    name: str
    status: Status | None


def read_rows(path: Path, errors: list[str]) -> Iterator[Row]:
    """The file's valid rows, lazily; each invalid row goes to `errors` by its line.
    Raises CsvFileError where the file itself is broken."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CsvFileError(
            f"{path}: cannot be read ({exc.strerror}); check the path", line=0
        ) from None
    first_line: dict[str, int] = {}
    with handle:
        reader = csv.reader(_text_lines(path, handle), strict=True)
        line = 1
        try:
            header = [(f or "").strip().lower() for f in next(reader, [])]
            if "email" not in header:
                raise CsvFileError(
                    f"{path}:1: no 'email' column in the header row; expected a header like "
                    "email,name,status",
                    line=1,
                )
            while True:
                line = reader.line_num + 1
                values = next(reader, None)
                if values is None:
                    break
                row = _row(path, line, dict(zip(header, values, strict=False)), errors)
                if row is None:
                    continue
                if row.address in first_line:
                    errors.append(
                        f"{path}:{line}: {row.address}: repeats line {first_line[row.address]}; "
                        "keep one row per address"
                    )
                    continue
                first_line[row.address] = line
                yield row
        except csv.Error as exc:
            raise CsvFileError(
                f"{path}:{line}: CSV error ({exc}); fix the row that starts here", line=line
            ) from None


def _row(path: Path, line: int, fields: dict[str, str], errors: list[str]) -> Row | None:
    if not any(v.strip() for v in fields.values()):
        return None  # a blank line
    try:
        address = normalize_email(fields.get("email") or "")
        name = clean_name(fields.get("name"))
        status = parse_status(fields["status"]) if fields.get("status") else None
    except SubscriberError as exc:
        errors.append(f"{path}:{line}: {exc}")
        return None
    return Row(line, address, name, status)


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
