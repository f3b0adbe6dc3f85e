"""The `newsletter` command: one Typer app assembled from its command groups."""

from __future__ import annotations

import gc
from typing import Annotated

import typer

from newsletter import __version__
from newsletter.cli import bounces, compose, sending, subscribers, web, worker
from newsletter.cli.common import examples_as_written, new_app

# Starting up (building the app, parsing the command line) creates objects that live
# to the end; collecting them at the default thresholds was a tenth of a short command's
# time. Every command gets the defaults back before it runs (main, below).
_STARTUP_THRESHOLDS = gc.get_threshold()
gc.set_threshold(100_000, 50, 50)

app = new_app("Write a weekly email newsletter as files, check and preview it, and send it.")
app.add_typer(compose.app)
app.add_typer(sending.app)
app.add_typer(web.app)
app.add_typer(worker.app)
app.add_typer(subscribers.app, name="subscribers")
app.add_typer(subscribers.db_app, name="db")
app.add_typer(bounces.app, name="bounces")
examples_as_written(
    compose.app, sending.app, web.app, worker.app, subscribers.app, subscribers.db_app, bounces.app
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"newsletter {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Write a weekly email newsletter as files, check and preview it, and send it."""
    gc.set_threshold(*_STARTUP_THRESHOLDS)
    gc.unfreeze()  # what an earlier `check` in this process left frozen (rare_collections)
