"""How the send and status commands talk: the question before a send, the progress
bar during it, and the summary after. Output only; the rules are in service/."""

from __future__ import annotations

import time
from contextlib import contextmanager

import typer

from newsletter.cli.common import agreed


def say_plan(plan, yes: bool) -> bool:
    """Print what is about to happen; True when the send should go ahead."""
    if plan.done:
        typer.echo(f"{plan.slug}: already sent ({plan.existing.finished_at:%Y-%m-%d %H:%M}).")
        typer.echo(f"See: newsletter status {plan.slug}")
        return False
    smtp = plan.settings.smtp
    if plan.mode == "retry":
        if not plan.to_send:
            typer.echo(f"{plan.slug}: no failed deliveries to send again.")
            return False
        question = (
            f"Send '{plan.existing.subject}' again to the {plan.to_send} failed "
            f"deliver(ies) of {plan.total}"
        )
    elif plan.existing:
        if plan.edited:
            typer.echo(
                f"Note: the issue file changed since this send started; resuming sends the "
                f"version the first {plan.already} reader(s) got. To send the edited text as "
                "a new issue, save it under a new file name and send that.",
                err=True,
            )
        question = f"Resume '{plan.existing.subject}': {plan.to_send} of {plan.total} still to send"
    else:
        question = f"Send '{plan.prepared.subject}' to {plan.to_send} active subscriber(s)"
        if plan.scheduled:
            question = f"{question} now instead of as {plan.scheduled.state.value}"
    relays = smtp.relay_list()
    rate = sum(r.rate for r in relays) if all(r.rate for r in relays) else 0
    where = f"via {', '.join(r.name for r in relays)}" + (f" at {rate:g}/s" if rate else "")
    typer.echo(f"{question} {where}.")
    if not yes and not agreed("Send now?"):
        typer.echo("Not sent.")
        raise typer.Exit(1)
    return True


@contextmanager
def progress_bar(plan):
    """A rich progress bar on stderr; yields (on_progress, on_stopping) callbacks."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7} msg/s"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("Sending", total=plan.total, completed=plan.already, rate="–")
        started, done = time.monotonic(), 0

        def on_progress(finished: int) -> None:
            nonlocal done
            done += finished
            rate = done / max(time.monotonic() - started, 1e-6)
            # Others' results in a shared send may be counted a moment early: never past the end.
            completed = min(plan.already + done, plan.total)
            progress.update(task, completed=completed, rate=f"{rate:,.0f}")

        def on_stopping() -> None:
            console.print("Stopping after the messages in flight (Ctrl-C again: at once)…")

        try:
            yield on_progress, on_stopping
        except KeyboardInterrupt:
            typer.echo(
                "Stopped at once. Run the same 'newsletter send' again to resume; a message "
                "in flight at that moment may arrive twice, with the same Message-ID.",
                err=True,
            )
            raise typer.Exit(130) from None


def say_outcome(outcome, command: str) -> None:
    from newsletter.service.sending import SendPaused

    counts = {state.value: n for state, n in outcome.counts.items()}
    report, resume = outcome.report, f"Run '{command}' again to resume"
    if report.paused:
        lost = (
            f" {report.unrecorded} result(s) could not be recorded; those readers may get "
            "the issue twice, with the same Message-ID."
            if report.unrecorded
            else " (nobody gets it twice)"
        )
        raise SendPaused(f"send paused: {report.paused}; fix the cause. {resume}{lost}.")
    summary = f"{counts['sent']} sent, {counts['bounced']} bounced, {counts['failed']} failed"
    if counts["skipped"]:
        summary += f", {counts['skipped']} skipped (left the list meanwhile)"
    if not outcome.finished:
        typer.echo(f"Stopped: {summary}, {counts['pending']} to go. {resume}.")
        raise typer.Exit(130 if report.stopped else 1)
    typer.echo(f"Done: {summary}. Details: newsletter status {outcome.slug}")


def say_scheduled(scheduled, settings) -> None:
    from newsletter.service.schedule import shown

    record = scheduled.record
    moved = f" (was {shown(settings, scheduled.previous)})" if scheduled.previous else ""
    typer.echo(
        f"{record.slug}: scheduled for {shown(settings, record.scheduled_at)}{moved}. "
        "A running 'newsletter worker' (or 'worker --once' from cron) sends it then, to "
        "whoever is subscribed at that time."
    )
    typer.echo(f"Unschedule: newsletter send {record.slug} --cancel")


def say_statuses(statuses) -> None:
    if not statuses:
        typer.echo("Nothing sent yet.")
    for status in statuses:
        typer.echo(f"{status.record.slug}  {status.record.state.value:<9} {_line(status)}")


def _line(status) -> str:
    """Counts for a started send; the time and what to do for one that waits."""
    record = status.record
    if status.waiting:
        return f"due {status.due}" + (
            f"  (late: start it with 'newsletter send {record.slug}', or --cancel)"
            if status.late
            else "  (overdue: is a worker running?)"
            if status.overdue
            else ""
        )
    if record.state.value == "cancelled":
        return f"was due {status.due}"
    return "  ".join(f"{state.value} {n}" for state, n in status.counts.items())


def say_status(status) -> None:
    from newsletter.service.status import PROBLEMS_SHOWN

    record = status.record
    if not record.started:
        typer.echo(f"{record.slug}: {record.state.value}: {_line(status)}")
        return
    typer.echo(f"{record.slug}: {record.state.value}, started {record.started_at:%Y-%m-%d %H:%M}")
    for state, n in status.counts.items():
        typer.echo(f"  {state.value:<8} {n}")
    _say_progress(status)
    if status.problems:
        typer.echo("Not delivered (yet):")
        for email, state, attempts, reply in status.problems:
            typer.echo(f"  {email}  {state.value}  after {attempts} attempt(s): {reply}")
        if len(status.problems) == PROBLEMS_SHOWN:
            typer.echo(f"  (the first {PROBLEMS_SHOWN} are shown)")


def _say_progress(status) -> None:
    """Speed, time left, and the table of workers and relays of a send."""
    if status.rate and status.record.state.value == "sending":  # a finished send has no speed
        left = f", about {_duration(status.eta)} left" if status.eta is not None else ""
        typer.echo(f"Speed: {status.rate:.1f} messages a second over the last minute{left}")
    if status.workers:
        typer.echo("Workers:")
        typer.echo(f"  {'worker':<40} {'host':<20} {'pid':>7} {'sent':>8} {'failed':>7}  last seen")
        for w in status.workers:
            seen = f"{w.last_seen:%H:%M:%S}" if w.last_seen else "-"
            typer.echo(
                f"  {w.id:<40} {w.host[:20]:<20} {w.pid or '-':>7} {w.sent:>8} {w.failed:>7}"
                f"  {seen}"
            )
    if status.relays:
        typer.echo("Relays:")
        typer.echo(f"  {'relay':<40} {'sent':>8} {'failed':>7}  state")
        for r in status.relays:
            typer.echo(f"  {r.name:<40} {r.sent:>8} {r.failed:>7}  {r.state}")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def say_json(data) -> None:
    import json

    typer.echo(json.dumps(data, indent=2))
