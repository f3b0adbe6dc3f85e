"""send, status and sink: each a few lines over one service call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, issue_path, reports_errors, warned
from newsletter.cli.progress import progress_bar, say_outcome, say_plan, say_scheduled

app = typer.Typer()

IssueArgument = Annotated[Path, typer.Argument(metavar="ISSUE", help="Issue file (or slug).")]


@app.command(
    epilog="Example: newsletter send issues/2026-11-24-survival-of-the-fittest-funnel.md --yes\n"
    "Example: newsletter send 2026-11-24-survival-of-the-fittest-funnel --at 2026-11-24T08:00"
)
@reports_errors
def send(
    issue: IssueArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Build every message, send nothing.")
    ] = False,
    test_to: Annotated[
        str | None,
        typer.Option("--test-to", metavar="ADDR", help="Send one [TEST] copy to ADDR only."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="TIME",
            help="Schedule instead: ISO 8601, e.g. 2026-12-08T08:00 ([newsletter] timezone).",
        ),
    ] = None,
    cancel: Annotated[bool, typer.Option("--cancel", help="Unschedule a scheduled send.")] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Send again to the deliveries that failed.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Send an issue to every active subscriber (or schedule it); run it again to resume."""
    from newsletter.config import load_config

    mode = one_mode(dry_run=dry_run, test_to=test_to, at=at, cancel=cancel, retry=retry_failed)
    settings = warned(load_config(config))
    MODES[mode](settings, issue, issue_path(issue, settings), yes=yes, test_to=test_to, at=at)


def one_mode(**chosen) -> str:
    """Which kind of send the options ask for; refused when they ask for two."""
    from newsletter.service.sending import SendRefused

    names = [name for name, value in chosen.items() if value]
    if names == ["dry_run", "test_to"]:
        raise SendRefused("--dry-run and --test-to: choose one (a test copy is a real send)")
    if len(names) > 1:
        raise SendRefused(f"{' and '.join(FLAGS[n] for n in names)}: choose one")
    return names[0] if names else "send"


def _send(settings, issue, path, *, yes, **_) -> None:
    from newsletter.service import sending

    plan = sending.plan(settings, path)
    _go(plan, yes, f"newsletter send {issue}")


def _go(plan, yes: bool, command: str) -> None:
    from newsletter.service import sending

    if say_plan(plan, yes):
        with progress_bar(plan) as (on_progress, on_stopping):
            outcome = sending.run(plan, on_progress=on_progress, on_stopping=on_stopping)
        say_outcome(outcome, command)


def _retry(settings, issue, path, *, yes, **_) -> None:
    from newsletter.service import sending

    _go(sending.plan_retry(settings, path.stem, str(issue)), yes, f"newsletter send {issue}")


def _test(settings, issue, path, *, test_to, **_) -> None:
    from newsletter.service import trial

    address, reply = trial.send_test(settings, path, test_to)
    typer.echo(f"Test copy to {address}: {reply}")
    raise typer.Exit(0 if reply.ok else 1)


def _dry_run(settings, issue, path, **_) -> None:
    from newsletter.service import trial

    say_dry_run(trial.dry_run(settings, path))


def _schedule(settings, issue, path, *, at, **_) -> None:
    from newsletter.service import schedule

    say_scheduled(schedule.schedule(settings, path, at), settings)


def _cancel(settings, issue, path, **_) -> None:
    from newsletter.service import schedule

    record = schedule.cancel(settings, path.stem, str(issue))
    typer.echo(
        f"{record.slug}: cancelled (was due {schedule.shown(settings, record.scheduled_at)})."
    )


FLAGS = {
    "dry_run": "--dry-run",
    "test_to": "--test-to",
    "at": "--at",
    "cancel": "--cancel",
    "retry": "--retry-failed",
}
MODES = {
    "send": _send,
    "retry": _retry,
    "test_to": _test,
    "dry_run": _dry_run,
    "at": _schedule,
    "cancel": _cancel,
}


def say_dry_run(result) -> None:
    per = f", {result.seconds / result.count * 1e6:.0f} µs each" if result.count else ""
    typer.echo(
        f"Dry run: built {result.count} message(s), {result.size / 1e6:.1f} MB in "
        f"{result.seconds:.2f} s{per}; nothing was sent or recorded."
    )


@app.command(epilog="Example: newsletter status 2026-11-24-survival-of-the-fittest-funnel")
@reports_errors
def status(
    issue: Annotated[
        str | None, typer.Argument(metavar="[ISSUE]", help="Issue slug or file.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (counts, workers, relays) for scripts.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Counts per delivery state, who sends and through which relays, how fast, and
    the failures with the server's replies."""
    from newsletter.cli.progress import say_json, say_status, say_statuses
    from newsletter.config import load_config
    from newsletter.service import status as service

    settings = load_config(config)
    if issue is None:
        found = service.all_sends(settings)
        return say_json([s.as_dict() for s in found]) if as_json else say_statuses(found)
    try:
        one = service.one_send(settings, Path(issue).stem, issue)
    except service.NotSent:
        issue_path(Path(issue), settings)  # a near miss of an issue's name: "did you mean"
        raise
    say_json(one.as_dict()) if as_json else say_status(one)


@app.command("sink", epilog="Example: newsletter sink --port 2525 --out outbox")
@reports_errors
def sink_(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 2525,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    out: Annotated[Path, typer.Option(help="Folder for the .eml files.")] = Path("outbox"),
) -> None:
    """A local SMTP server that keeps every message as an .eml file (Ctrl-C stops it)."""
    from newsletter.devtools import sink

    typer.echo(f"Listening on {host}:{port}; messages go to {out}/. Ctrl-C stops.", err=True)
    received = sink.serve(host, port, out)
    typer.echo(f"Sink stopped: {received} message(s) in {out}/.", err=True)
