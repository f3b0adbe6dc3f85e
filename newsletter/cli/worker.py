"""worker: the unattended duties (due sends, and what other stages register)."""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, reports_errors

app = typer.Typer()


@app.command(epilog="Example: newsletter worker --once   (from cron or a systemd timer)")
@reports_errors
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Do what is due now, then exit (for cron).")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Start scheduled sends when due, and run the other unattended duties; SIGTERM stops."""
    from newsletter.config import load_config
    from newsletter.service import worker as service

    settings = load_config(config)
    failures = service.serve(settings, once=once, say=lambda line: typer.echo(line))
    raise typer.Exit(1 if once and failures else 0)
