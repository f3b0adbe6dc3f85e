"""What every command shares: --config, and turning a NewsletterError into a
one-line message with exit code 1 (never a traceback)."""

from __future__ import annotations

import contextlib
import difflib
import functools
import gc
import re
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
    """A command whose help reads as click's always did: usage as `ISSUE` or `[ISSUE]`
    (typer writes `{ISSUE}`), and values as `PATH` or `TEXT` (typer writes `<path>`,
    `<list[Path]>`); and whose epilog (its example) is printed as written: plain help
    wraps text at hyphens, which would break the example's file name in two."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = (param.metavar or param.name.upper()).strip("[]{}")
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces

    def format_options(self, ctx, formatter) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            name, text = record
            if param.param_type_name == "argument":
                arguments.append((_argument_name(param), text))
            else:
                # Typer shows a value's type as <str>; click's metavar reads better.
                options.append((_TYPE_SHOWN.sub(" " + _option_metavar(param), name), text))
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def format_epilog(self, ctx, formatter) -> None:
        if self.epilog:
            formatter.write_paragraph()
            for line in self.epilog.splitlines():
                formatter.write(f"{'':>{formatter.current_indent + 2}}{line}\n")


_TYPE_SHOWN = re.compile(r" <[^>]*>(?=(\.\.\.)?$)")
_TYPE_NAMES = {str: "TEXT", int: "INTEGER", float: "NUMBER", Path: "PATH", bool: "BOOLEAN"}


def _argument_name(param) -> str:
    name = (param.metavar or param.name.upper()).strip("[]{}")
    return name + ("..." if param.nargs != 1 else "")


def _option_metavar(param) -> str:
    described = getattr(param, "type_descriptor", None)
    choices = getattr(described, "choices", None)
    if choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
    annotation = getattr(described, "annotation", None)
    return _TYPE_NAMES.get(annotation, "PATH" if getattr(described, "is_path", False) else "VALUE")


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


@contextlib.contextmanager
def rare_collections():
    """For a short command: the cyclic garbage collector runs every 100,000 new objects
    instead of every 700. Loading the compose stage creates some 50,000 objects that
    live to the end, and at the default thresholds collecting (and re-collecting)
    them was an eighth of `check` and most of the spread between its runs."""
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 50)
    try:
        yield
    finally:
        # Out of the collector's sight: at the old thresholds the next object created
        # would start a full collection of everything the command made (~13 ms; taking
        # them back in costs ~50 ms). The CLI exits now; a process that goes on (a test
        # run) has them back at its next command (the app's callback).
        gc.freeze()
        gc.set_threshold(*thresholds)


class NoAnswer(NewsletterError):
    """A question was asked with no terminal to answer it (cron, a script, a pipe)."""


def agreed(question: str) -> bool:
    """The editor's yes to `question`; without a terminal, an error that says --yes."""
    import sys

    try:
        return typer.confirm(question, default=False)
    except typer.Abort:
        if sys.stdin.isatty():
            raise  # Ctrl-C at the question: click says "Aborted!"
        raise NoAnswer(
            f"no answer to {question!r}: there is no terminal to ask on; add --yes to go "
            "ahead without asking"
        ) from None


class UnknownIssue(NewsletterError):
    """An issue named on the command line is not in issues/, but one like it is."""


def issue_path(arg: Path, settings: Config) -> Path:
    """A path as given, or a slug or file name inside the folder's issues/. A name
    that matches nothing but resembles an issue gets a suggestion."""
    if arg.exists():
        return arg
    issues = settings.root / "issues"
    for candidate in (issues / arg.name, issues / f"{arg.name}.md"):
        if candidate.is_file():
            return Path(shown(candidate))
    close = closest_issue(arg.name.removesuffix(".md"), sorted(issues.glob("*.md")))
    if close:
        raise UnknownIssue(f"{arg}: no such issue file; did you mean {close}?")
    return arg  # loading it says it does not exist


def closest_issue(name: str, paths: list[Path]) -> str | None:
    """The one issue whose name contains `name`, else the most similar, if any is."""
    slugs = [p.stem for p in paths]
    containing = [slug for slug in slugs if name.lower() in slug.lower()]
    if len(containing) == 1 and name:
        return containing[0]
    close = difflib.get_close_matches(name, slugs, n=1, cutoff=0.6)
    return close[0] if close else None


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
