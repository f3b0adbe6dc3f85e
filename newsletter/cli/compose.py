"""Composing: init, new, check and preview. Each command is a few lines over one core call.

Only typer and the standard library load with this module: the compose stage
(Jinja2, MJML, pydantic, YAML) is imported inside each command, so that
`newsletter --help` starts at once."""

from __future__ import annotations

import datetime as dt
import sys
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, issue_path, rare_collections, reports_errors
from newsletter.errors import shown

app = typer.Typer()


def _text_option(help_text: str, metavar: str = "TEXT"):
    return typer.Option(metavar=metavar, help=help_text, show_default=False)


@app.command(
    epilog="Example: newsletter init my-letter --name 'Field Notes' --from-address me@example.org"
)
@reports_errors
def init(
    folder: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder to create (or fill).")
    ] = Path("."),
    name: Annotated[str | None, _text_option("The newsletter's name.")] = None,
    from_address: Annotated[
        str | None, _text_option("The address issues come from.", "ADDRESS")
    ] = None,
    from_name: Annotated[str | None, _text_option("The sender's name, e.g. yours.")] = None,
    postal_address: Annotated[
        str | None, _text_option("Your postal address (the law wants one in every email).")
    ] = None,
    base_url: Annotated[
        str | None, _text_option("Your site's https:// address (links start with it).", "URL")
    ] = None,
) -> None:
    """Create a newsletter folder: config, secrets, templates and an example issue."""
    from newsletter.compose import scaffold

    identity = scaffold.Identity(name, from_address, from_name, postal_address, base_url)
    if identity.missing and sys.stdin.isatty():
        identity = _ask(identity)
    identity = identity.completed()
    created = scaffold.init(folder, identity)
    typer.echo(f"Created a newsletter in {folder}/:")
    for path in created:
        typer.echo(f"  {shown(path)}")
    if identity.missing:
        _say_demo_identity(identity.missing)
    typer.echo(f"Next: edit {shown(folder / 'newsletter.toml')}, then run 'newsletter new'.")


PROMPTS = {
    "name": "Newsletter name",
    "from_address": "From address (readers see it and reply to it)",
    "from_name": "From name (the sender readers see)",
    "postal_address": "Postal address (the law wants one in every email)",
    "base_url": "Your site's https:// address (unsubscribe and archive links start with it)",
}


def _ask(identity):
    """Ask in the terminal for what the flags did not give; a bad answer is asked again."""
    import dataclasses

    from newsletter.compose import scaffold

    values = dataclasses.asdict(identity)
    for field in identity.missing:

        def check(answer: str, field: str = field) -> str:
            try:
                scaffold.config_text(scaffold.Identity(**{field: answer}))
            except scaffold.ScaffoldError as exc:
                raise typer.BadParameter(str(exc).split(": ", 1)[1]) from None
            return answer

        default = values["name"] if field == "from_name" else None
        values[field] = typer.prompt(PROMPTS[field], default=default, value_proc=check)
    return scaffold.Identity(**values)


def _say_demo_identity(missing: list[str]) -> None:
    flags = ", ".join("--" + field.replace("_", "-") for field in missing)
    typer.echo(
        f"Note: the demo's values stand in for what was not given ({flags}); put yours in "
        "newsletter.toml before sending to readers ('newsletter check' reminds you)."
    )


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
    from newsletter.compose import scaffold
    from newsletter.config import load_config

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
    with rare_collections():
        from newsletter.compose.preflight import check_files
        from newsletter.config import load_config

        settings = load_config(config)
        checked = check_files([issue_path(p, settings) for p in issues or []], settings)
    for line in checked.report():
        typer.echo(line)
    if checked.failed(strict):
        raise typer.Exit(1)


@app.command(
    epilog="Example: newsletter preview 2026-11-24-survival-of-the-fittest-funnel --screenshots"
)
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
    from newsletter.compose.preview import write_preview
    from newsletter.config import load_config

    settings = load_config(config)
    written = write_preview(issue_path(issue, settings), settings, out)
    typer.echo(f"HTML:  {shown(written.html)} ({written.size / 1024:.0f} KB)")
    typer.echo(f"Text:  {shown(written.text)}")
    if shots:
        _screenshots(written.html, written.folder, written.slug)
    if open_:
        webbrowser.open(written.html.resolve().as_uri())


def _screenshots(html_file: Path, folder: Path, slug: str) -> None:
    from newsletter.devtools import screenshots

    if not screenshots.browser_available():
        typer.echo(
            "Screenshots skipped: Chromium is not installed; run "
            "'sudo apt-get install chromium' and try again.",
            err=True,
        )
        return
    for label, path in screenshots.take(html_file, folder, slug).items():
        typer.echo(f"{label.capitalize() + ':':<6} {shown(path)}")
