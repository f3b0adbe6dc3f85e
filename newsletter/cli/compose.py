"""Composing: init, new, check and preview. Each command is a few lines over one core call."""

from __future__ import annotations

import datetime as dt
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, issue_path, reports_errors
from newsletter.compose import preflight, scaffold
from newsletter.compose.issue import IssueError, load_issue
from newsletter.compose.render import prepare, public_fill
from newsletter.config import Config, load_config
from newsletter.devtools import screenshots
from newsletter.errors import NewsletterError, shown

app = typer.Typer()


@app.command(epilog="Example: newsletter init my-newsletter")
@reports_errors
def init(
    folder: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder to create (or fill).")
    ] = Path("."),
) -> None:
    """Create a newsletter folder: config, secrets, templates and an example issue."""
    created = scaffold.init(folder)
    typer.echo(f"Created a newsletter in {folder}/:")
    for path in created:
        typer.echo(f"  {shown(path)}")
    typer.echo(f"Next: edit {shown(folder / 'newsletter.toml')}, then run 'newsletter new'.")


@app.command(epilog="Example: newsletter new --title 'B2B Flip-flop'")
@reports_errors
def new(
    date: Annotated[
        str | None,
        typer.Option(metavar="YYYY-MM-DD", help="Issue date. Default: the next publishing day."),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Working title; also names the file.")] = None,
    config: ConfigOption = None,
) -> None:
    """Start next week's issue: a file with every section stubbed and explained."""
    settings = load_config(config)
    path = scaffold.new_issue(
        settings, date=scaffold.parse_date(date), title=title, today=dt.date.today()
    )
    typer.echo(f"Wrote {shown(path)}")
    typer.echo(f"Fill in the TODOs, then: newsletter check {shown(path)}")


@app.command(epilog="Example: newsletter check issues/2026-11-24-survival-of-the-fittest-funnel.md")
@reports_errors
def check(
    issues: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="ISSUE",
            help="Issue files (or slugs). Default: every issue in issues/.",
            show_default=False,
        ),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Treat warnings as errors.")] = False,
    config: ConfigOption = None,
) -> None:
    """Validate and preflight issues: schema, size, links, alt text, footer, leftovers."""
    settings = load_config(config)
    paths = [issue_path(p, settings) for p in issues] if issues else _all_issues(settings)
    errors = warnings = 0
    for path in paths:
        findings = preflight.check_file(path, settings)
        for finding in findings:
            typer.echo(str(finding))
        errors += sum(f.level == "error" for f in findings)
        warnings += sum(f.level == "warning" for f in findings)
        if not findings:
            typer.echo(f"{shown(path)}: ok")
    typer.echo(f"Checked {len(paths)} issue(s): {errors} error(s), {warnings} warning(s).")
    if errors or (strict and warnings):
        raise typer.Exit(1)


@app.command(epilog="Example: newsletter preview issues/2026-11-24-….md --screenshots")
@reports_errors
def preview(
    issue: Annotated[Path, typer.Argument(metavar="ISSUE", help="Issue file (or slug).")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write. Default: build/ in the newsletter folder.")
    ] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the HTML in a browser.")] = False,
    shots: Annotated[
        bool,
        typer.Option("--screenshots", help="Also write phone (375 px) and desktop (800 px) PNGs."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Render an issue to SLUG.html and SLUG.txt, as a reader without a name gets it."""
    settings = load_config(config)
    prepared = prepare(load_issue(issue_path(issue, settings)), settings)
    filled = public_fill(prepared, settings)
    out_dir = out or settings.root / "build"
    html_file, text_file = out_dir / f"{prepared.slug}.html", out_dir / f"{prepared.slug}.txt"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        html_file.write_text(filled.html, encoding="utf-8")
        text_file.write_text(filled.text, encoding="utf-8")
    except OSError as exc:
        raise PreviewError(
            f"{shown(exc.filename or out_dir)}: cannot write the preview ({exc.strerror}); "
            "choose another folder with --out"
        ) from None
    size = len(filled.html.encode()) / 1024
    typer.echo(f"HTML:  {shown(html_file)} ({size:.0f} KB)")
    typer.echo(f"Text:  {shown(text_file)}")
    if shots:
        if screenshots.browser_available():
            for label, path in screenshots.take(html_file, out_dir, prepared.slug).items():
                typer.echo(f"{label.capitalize() + ':':<6} {shown(path)}")
        else:
            typer.echo(
                "Screenshots skipped: Chromium is not installed; run "
                "'sudo apt-get install chromium' and try again.",
                err=True,
            )
    if open_:
        webbrowser.open(html_file.resolve().as_uri())


class PreviewError(NewsletterError):
    """The preview cannot be written where asked."""


def _all_issues(settings: Config) -> list[Path]:
    paths = sorted((settings.root / "issues").glob("*.md"))
    if not paths:
        raise IssueError(
            f"{shown(settings.root / 'issues')}: has no issues yet; run 'newsletter new'"
        )
    return [Path(shown(p)) for p in paths]
