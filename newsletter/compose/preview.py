"""`newsletter preview`: an issue written to SLUG.html and SLUG.txt, as a reader
without a name gets it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.compose.issue import load_issue
from newsletter.compose.render import prepare, public_fill
from newsletter.config import Config
from newsletter.errors import NewsletterError, shown


class PreviewError(NewsletterError):
    """The preview cannot be written where asked."""


@dataclass(frozen=True)
class Preview:
    slug: str
    folder: Path
    html: Path
    text: Path
    size: int  # bytes of HTML, the figure Gmail's clipping goes by


def write_preview(path: Path, config: Config, out: Path | None = None) -> Preview:
    """Render the issue at `path` and write both parts into `out` (default: build/)."""
    prepared = prepare(load_issue(path), config, cached=True)
    filled = public_fill(prepared, config)
    folder = out or config.root / "build"
    html_file, text_file = folder / f"{prepared.slug}.html", folder / f"{prepared.slug}.txt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        html_file.write_text(filled.html, encoding="utf-8")
        text_file.write_text(filled.text, encoding="utf-8")
    except OSError as exc:
        raise PreviewError(
            f"{shown(exc.filename or folder)}: cannot write the preview ({exc.strerror}); "
            "choose another folder with --out"
        ) from None
    return Preview(prepared.slug, folder, html_file, text_file, len(filled.html.encode()))
