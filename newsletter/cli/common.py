"""What every command shares: --config, and turning a NewsletterError into a
one-line message with exit code 1 (never a traceback)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperCommand

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
        # Plain help, as click prints it: rendering help with rich imports ~0.1 s of rich
        # and markdown-it, which doubled `newsletter --help`. The root's mode is every
        # command's mode.
        rich_markup_mode=None,
        # click stops at 80 columns even in a wider terminal, cutting command summaries short.
        context_settings={"max_content_width": 100},
    )


class ExampleCommand(TyperCommand):
    """A command whose epilog (its example) is printed as written: plain help wraps
    text at hyphens, which would break the example's file name in two."""

    def format_epilog(self, ctx, formatter) -> None:
        if self.epilog:
            formatter.write_paragraph()
            for line in self.epilog.splitlines():
                formatter.write(f"{'':>{formatter.current_indent + 2}}{line}\n")


def examples_as_written(*groups: typer.Typer) -> None:
    """Give every command of these groups the ExampleCommand help."""
    for group in groups:
        for command in group.registered_commands:
            if command.cls in (None, TyperCommand):
                command.cls = ExampleCommand


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


def warned(settings: Config) -> Config:
    """The settings, after saying what is worth a look in them before a send (the
    demo's placeholder identity, a base_url on this machine); errors stop the send later."""
    from newsletter.compose.configcheck import concerns

    for concern in concerns(settings):
        if concern.level == "warning":
            typer.echo(f"warning: {concern.where}: {concern.message}", err=True)
    return settings


def load_config(path: Path | None) -> Config:
    """The folder's settings. pydantic loads here, on first use, not at startup."""
    from newsletter.config import load_config as load

    return load(path)
