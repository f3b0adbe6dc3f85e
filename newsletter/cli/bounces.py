"""`newsletter bounces …`: read returned mail (bounces, spam complaints, mailed
unsubscribes) and act on it. One line per message: what it was, what it did."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, load_config, new_app, reports_errors

app = new_app("Read bounces, spam complaints and mailed unsubscribes.")


def _service():
    from newsletter.service import bounces

    return bounces


@app.command(epilog="Example: newsletter bounces ingest bounce.eml saved.mbox")
@reports_errors
def ingest(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Message files or mboxes; none: read one message or mbox from stdin."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Read returned mail from files or standard input, and act on each message."""
    settings = load_config(config)
    if files:
        lines = _service().ingest_files(settings, files)
    else:
        lines = _service().ingest_stdin(settings, sys.stdin.buffer.read())
    for line in lines:
        typer.echo(line)


@app.command(epilog="Example: newsletter bounces fetch")
@reports_errors
def fetch(config: ConfigOption = None) -> None:
    """Read the bounce mailbox named in [bounces] (a Maildir, or IMAP over TLS), act on
    each unread message, and mark it read (or move it to `move_to`)."""
    count = 0
    for line in _service().fetch(load_config(config)):
        typer.echo(line)
        count += 1
    typer.echo(f"{count} message(s) read.")
