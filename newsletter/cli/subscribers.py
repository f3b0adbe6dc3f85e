"""`newsletter subscribers …` and `newsletter db upgrade`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, new_app, reports_errors
from newsletter.config import load_config
from newsletter.storage import db, subscribers
from newsletter.storage.models import Status

app = new_app("Manage the subscriber list.")
db_app = new_app("Manage the database schema.")

StatusOption = Annotated[
    Status | None, typer.Option("--status", help="Only subscribers with this status.")
]


def _engine(config_path: Path | None):
    return db.connect(load_config(config_path))


@app.command(epilog="Example: newsletter subscribers add ana@example.com --name 'Ana Souza'")
@reports_errors
def add(
    email: Annotated[str, typer.Argument(help="Email address.")],
    name: Annotated[str | None, typer.Option(help="Name used in the greeting.")] = None,
    config: ConfigOption = None,
) -> None:
    """Add an active subscriber (you vouch for their consent)."""
    with db.session(_engine(config)) as session:
        added = subscribers.add(session, email, name)
    typer.echo(f"Added {added.email}.")


@app.command(epilog="Example: newsletter subscribers remove ana@example.com")
@reports_errors
def remove(
    email: Annotated[str, typer.Argument(help="Email address.")],
    config: ConfigOption = None,
) -> None:
    """Unsubscribe someone. The record stays, so an import cannot add them back."""
    with db.session(_engine(config)) as session:
        removed = subscribers.remove(session, email)
    typer.echo(f"Unsubscribed {removed.email}.")


@app.command("list", epilog="Example: newsletter subscribers list --status active")
@reports_errors
def list_(status: StatusOption = None, config: ConfigOption = None) -> None:
    """Print subscribers, one per line: email, status, name."""
    with db.session(_engine(config)) as session:
        for subscriber in subscribers.iterate(session, status):
            typer.echo(f"{subscriber.email}\t{subscriber.status.value}\t{subscriber.name}")


@app.command(epilog="Example: newsletter subscribers count")
@reports_errors
def count(config: ConfigOption = None) -> None:
    """How many subscribers there are, by status."""
    with db.session(_engine(config)) as session:
        totals = subscribers.counts(session)
    for status, number in totals.items():
        typer.echo(f"{status.value:<13} {number}")
    typer.echo(f"{'total':<13} {sum(totals.values())}")


@app.command("import", epilog="Example: newsletter subscribers import list.csv")
@reports_errors
def import_(
    file: Annotated[Path, typer.Argument(help="CSV with a header row: email[,name][,status].")],
    config: ConfigOption = None,
) -> None:
    """Import a CSV. Safe to repeat; never re-activates anyone who left or bounced."""
    with db.session(_engine(config)) as session:
        report = subscribers.import_csv(session, file)
    typer.echo(
        f"Imported {file}: {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.kept_unsubscribed} kept unsubscribed or bounced."
    )
    if report.errors:
        for line in report.errors:
            typer.echo(f"error: {line}", err=True)
        typer.echo(
            f"{len(report.errors)} row(s) skipped; fix them and import the file again "
            "(rows already imported are left as they are).",
            err=True,
        )
        raise typer.Exit(1)


@app.command(epilog="Example: newsletter subscribers export list.csv --status active")
@reports_errors
def export(
    file: Annotated[Path, typer.Argument(help="CSV file to write.")],
    status: StatusOption = None,
    config: ConfigOption = None,
) -> None:
    """Write subscribers to a CSV: email, name, status, created_at."""
    with db.session(_engine(config)) as session:
        written = subscribers.export_csv(session, file, status)
    typer.echo(f"Exported {written} subscriber(s) to {file}.")


@app.command(epilog="Example: newsletter subscribers show ana@example.com --json")
@reports_errors
def show(
    email: Annotated[str, typer.Argument(help="Email address.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Everything held about one subscriber (consent record included), e.g. for a
    data-access request."""
    with db.session(_engine(config)) as session:
        found = subscribers.find(session, email)
        if found is None:
            raise subscribers.SubscriberError(f"{email}: is not on the list")
        record = {column.name: getattr(found, column.key) for column in found.__table__.columns}
        record["deliveries"] = subscribers.deliveries_of(session, found.id)
    if as_json:
        typer.echo(json.dumps(record, default=str, indent=2))
        return
    for key, value in record.items():
        if key != "deliveries":
            typer.echo(f"{key:<16} {'' if value is None else value}")
    typer.echo(f"{'deliveries':<16} {len(record['deliveries'])}")


@app.command(epilog="Example: newsletter subscribers erase ana@example.com --yes")
@reports_errors
def erase(
    email: Annotated[str, typer.Argument(help="Email address.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    config: ConfigOption = None,
) -> None:
    """Delete everything held about one person; only a hash stays, so no import re-adds them."""
    if not yes and not typer.confirm(f"Erase all data about {email}? This cannot be undone"):
        raise typer.Exit(1)
    with db.session(_engine(config)) as session:
        address = subscribers.erase(session, email)
    typer.echo(f"Erased {address}; only a hash remains, so imports will skip it.")


@db_app.command(epilog="Example: newsletter db upgrade")
@reports_errors
def upgrade(config: ConfigOption = None) -> None:
    """Bring the database schema up to date (also done on first use)."""
    engine = db.connect(load_config(config), migrate=False)
    ran = db.upgrade(engine)
    typer.echo("Database upgraded." if ran else "Database is up to date.")
