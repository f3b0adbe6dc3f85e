"""`newsletter subscribers …` and `newsletter db upgrade`.

Each command calls one function of newsletter.service.subscribers, imported
inside the command: the database stack (SQLAlchemy, ~0.3 s) loads only for
commands that use it, not for `newsletter --help`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from newsletter.cli.common import ConfigOption, agreed, load_config, new_app, reports_errors

app = new_app("Manage the subscriber list.")
db_app = new_app("Manage the database schema.")

# The values of storage.models.Status (a test keeps them equal), spelled out here
# so that parsing the command line needs no database code.
StatusName = Literal["pending", "active", "unsubscribed", "bounced"]
StatusOption = Annotated[
    StatusName | None, typer.Option("--status", help="Only subscribers with this status.")
]


def _service():
    from newsletter.service import subscribers

    return subscribers


@app.command(epilog="Example: newsletter subscribers add ana@example.com --name 'Ana Souza'")
@reports_errors
def add(
    email: Annotated[str, typer.Argument(help="Email address.")],
    name: Annotated[
        str | None,
        typer.Option(help="Full name, for the To: line; the greeting uses its first name."),
    ] = None,
    first_name: Annotated[
        str | None,
        typer.Option(help="First name, kept apart (shown, exported); default: split from --name."),
    ] = None,
    last_name: Annotated[str | None, typer.Option(help="Last name.")] = None,
    config: ConfigOption = None,
) -> None:
    """Add an active subscriber (you vouch for their consent)."""
    address = _service().add(load_config(config), email, name, first_name, last_name)
    typer.echo(f"Added {address}.")


@app.command(epilog="Example: newsletter subscribers remove ana@example.com")
@reports_errors
def remove(
    email: Annotated[str, typer.Argument(help="Email address.")],
    config: ConfigOption = None,
) -> None:
    """Unsubscribe someone. The record stays, so an import cannot add them back."""
    address = _service().remove(load_config(config), email)
    typer.echo(f"Unsubscribed {address}.")


@app.command("list", epilog="Example: newsletter subscribers list --status active")
@reports_errors
def list_(status: StatusOption = None, config: ConfigOption = None) -> None:
    """Print subscribers, one per line: email, status, name."""
    for email, state, name in _service().listing(load_config(config), status):
        typer.echo(f"{email}\t{state}\t{name}")


@app.command(epilog="Example: newsletter subscribers count")
@reports_errors
def count(config: ConfigOption = None) -> None:
    """How many subscribers there are, by status."""
    totals = _service().counts(load_config(config))
    for status, number in totals.items():
        typer.echo(f"{status:<13} {number}")
    typer.echo(f"{'total':<13} {sum(totals.values())}")


@app.command("import", epilog="Example: newsletter subscribers import list.csv")
@reports_errors
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header row (email, then any of name, status and the rest), "
            "or the subscriber export of Mailchimp, Substack, Buttondown, listmonk, Ghost, "
            "Kit or Beehiiv."
        ),
    ],
    config: ConfigOption = None,
) -> None:
    """Import a CSV. Safe to repeat; never re-activates anyone who left or bounced.
    Other columns are kept as attributes; the summary lists any it ignored."""
    report = _service().import_csv(load_config(config), file)
    _print_import(file, report)
    if report.errors:
        for line in report.errors:
            typer.echo(f"error: {line}", err=True)
        typer.echo(
            f"{len(report.errors)} row(s) skipped; fix them and import the file again "
            "(rows already imported are left as they are).",
            err=True,
        )
        raise typer.Exit(1)


def _print_import(file: Path, report) -> None:
    found = f"{report.source_format} export" if report.source_format else ""
    if report.delimiter != ",":
        found += f"{', ' if found else ''}{_DELIMITER_NAMES.get(report.delimiter)}-separated"
    typer.echo(
        f"Imported {file}{f' ({found})' if found else ''}: {report.added} added, "
        f"{report.updated} updated, {report.unchanged} unchanged, "
        f"{report.kept_unsubscribed} kept unsubscribed or bounced."
    )
    if set(report.by_status) - {"active"}:
        added = ", ".join(f"{status} {n}" for status, n in report.by_status.items())
        typer.echo(f"Added by status: {added}.")
    if report.kept_columns:
        typer.echo("Kept as attributes: " + ", ".join(report.kept_columns) + ".")
    if report.ignored_columns:
        typer.echo("Ignored columns: " + "; ".join(report.ignored_columns) + ".")


_DELIMITER_NAMES = {";": "semicolon", "\t": "tab", ",": "comma"}


@app.command(epilog="Example: newsletter subscribers export list.csv --status active")
@reports_errors
def export(
    file: Annotated[Path, typer.Argument(help="CSV file to write.")],
    status: StatusOption = None,
    config: ConfigOption = None,
) -> None:
    """Write subscribers to a CSV (names, status, dates, consent, attributes as JSON);
    it imports back to the same data."""
    written = _service().export_csv(load_config(config), file, status)
    # With '-' the CSV itself is on standard output; the summary must not join it.
    typer.echo(f"Exported {written} subscriber(s) to {file}.", err=str(file) == "-")


@app.command(epilog="Example: newsletter subscribers show ana@example.com --json")
@reports_errors
def show(
    email: Annotated[str, typer.Argument(help="Email address.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Everything held about one subscriber (consent record included), e.g. for a
    data-access request."""
    record = _service().show(load_config(config), email)
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    deliveries, events = record.pop("deliveries"), record.pop("bounces")
    for key, value in record.items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
        typer.echo(f"{key:<16} {'' if value is None else shown}")
    typer.echo(f"{'deliveries':<16} {len(deliveries)}")
    for event in events:  # the last bounces, complaints and mailed unsubscribes
        typer.echo(f"{'bounce':<16} {event['received_at']} {event['kind']} {event['detail']}")


@app.command(epilog="Example: newsletter subscribers erase ana@example.com --yes")
@reports_errors
def erase(
    email: Annotated[str, typer.Argument(help="Email address.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    config: ConfigOption = None,
) -> None:
    """Delete everything held about one person; only a hash stays, so no import re-adds them."""
    if not yes and not agreed(f"Erase all data about {email}? This cannot be undone"):
        raise typer.Exit(1)
    address = _service().erase(load_config(config), email)
    typer.echo(f"Erased {address}; only a hash remains, so imports will skip it.")


@db_app.command(epilog="Example: newsletter db upgrade")
@reports_errors
def upgrade(config: ConfigOption = None) -> None:
    """Create the database, or bring its schema up to date (also done on first use)."""
    ran = _service().upgrade_database(load_config(config))
    typer.echo("Database upgraded." if ran else "Database is up to date.")
