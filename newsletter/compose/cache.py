"""The newsletter folder's .newsletter-cache/: what `check` and `preview` keep
between runs so that the editor's next check is quick — compiled templates and
inlined pages. Each entry is found by its inputs and checked against them, so
none can outlive an edit; the folder can be deleted at any time. A cache that
cannot be read or written costs time, never a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import jinja2

CACHE_DIR = ".newsletter-cache"
_IGNORE = "# Created by newsletter: a cache, safe to delete.\n*\n"


def folder(root: Path, name: str) -> Path:
    """root/.newsletter-cache/name, created. Raises OSError when it cannot be."""
    path = root / CACHE_DIR / name
    path.mkdir(parents=True, exist_ok=True)
    ignore = root / CACHE_DIR / ".gitignore"
    if not ignore.exists():  # like .pytest_cache: never committed, whatever the repo's rules
        ignore.write_text(_IGNORE, encoding="utf-8")
    return path


def read(root: Path, name: str, key: str) -> str | None:
    path = root / CACHE_DIR / name / key
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # used: kept longer than the pages of issues no longer worked on
    return text


def write(root: Path, name: str, key: str, text: str, keep: int) -> None:
    """Write atomically (a reader never sees half an entry); keep the `keep` newest."""
    temporary = None
    try:
        where = folder(root, name)
        temporary = where / f".{key}.{os.getpid()}.tmp"
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, where / key)
        entries = sorted(
            (p for p in where.iterdir() if not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime_ns,
        )
        for old in entries[:-keep]:
            old.unlink(missing_ok=True)
    except OSError:
        if temporary:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


def fingerprint(*parts: str | Path) -> str:
    """A digest of strings and of files' contents: the code an entry depends on."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(Path(part).read_bytes() if isinstance(part, Path) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


class TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates (compiling is most of a render's time in a fresh process).
    Jinja reuses one only while its template's source is unchanged; `code` (the
    environment's settings, Jinja's version) is part of each key."""

    def __init__(self, root: Path, code: str) -> None:
        super().__init__(str(root / CACHE_DIR / "templates"))
        self.root, self.code = root, code

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        return fingerprint(self.code, name, filename or "")

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # damaged or unreadable: compile afresh
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            folder(self.root, "templates")
            super().dump_bytecode(bucket)
