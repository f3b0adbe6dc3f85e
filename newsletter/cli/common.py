"""What every command shares: --config, and turning a NewsletterError into a
one-line message with exit code 1 (never a traceback)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from newsletter.errors import NewsletterError, shown

if TYPE_CHECKING:  # pydantic costs a tenth of a second; --help needs no settings
    from newsletter.config import Config

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The newsletter.toml to use. Default: ./newsletter.toml, or $NEWSLETTER_CONFIG.",
        show_default=False,
    ),
]


def new_app(help_text: str) -> typer.Typer:
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,  # locals could hold the SMTP password
    )


def reports_errors(command):
    """Turn a user's mistake into its one-line message instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except NewsletterError as exc:
            for line in exc.lines():
                typer.echo(f"error: {line}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def issue_path(arg: Path, settings: Config) -> Path:
    """A path as given, or a slug or file name inside the folder's issues/."""
    if arg.exists():
        return arg
    issues = settings.root / "issues"
    for candidate in (issues / arg.name, issues / f"{arg.name}.md"):
        if candidate.is_file():
            return Path(shown(candidate))
    return arg
