"""send, status and sink."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

# Only what the command signatures need sits up here: `newsletter --help` builds every
# command, so the sending machinery (SQLAlchemy, premailer, aiosmtpd, rich) is imported
# inside the command that runs.
from newsletter.cli.common import ConfigOption, issue_path, reports_errors

app = typer.Typer()
PROBLEMS_SHOWN = 50


@app.command(
    epilog="Example: newsletter send issues/2026-11-24-survival-of-the-fittest-funnel.md --yes"
)
@reports_errors
def send(
    issue: Annotated[Path, typer.Argument(metavar="ISSUE", help="Issue file (or slug).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Build every message, send nothing.")
    ] = False,
    test_to: Annotated[
        str | None,
        typer.Option("--test-to", metavar="ADDR", help="Send one [TEST] copy to ADDR only."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Send an issue to every active subscriber; run it again to resume."""
    import asyncio

    from newsletter.compose import preflight
    from newsletter.compose.issue import IssueError, load_issue
    from newsletter.compose.render import prepare
    from newsletter.config import load_config
    from newsletter.mail.message import MessageFactory
    from newsletter.mail.transport import TransportError
    from newsletter.service.runner import SendPaused, send_test
    from newsletter.storage import db
    from newsletter.storage.delivery_log import Store
    from newsletter.storage.models import SendState
    from newsletter.storage.subscribers import normalize_email
    from newsletter.tokens import Signer, secret_of

    settings = load_config(config)
    loaded = load_issue(issue_path(issue, settings))
    prepared = prepare(loaded, settings)
    errors = [f for f in preflight.inspect(loaded, prepared, settings) if f.level == "error"]
    if errors:
        raise IssueError(
            f"{loaded.path}: not sent, 'newsletter check' finds {len(errors)} error(s); "
            "fix them first",
            details=[f"{f.where}: {f.message}" for f in errors],
        )
    signer = Signer(secret_of(settings))
    if test_to and dry_run:
        raise SendPaused("--dry-run and --test-to: choose one (a test copy is a real send)")
    if test_to:
        address = normalize_email(test_to)
        factory = MessageFactory(prepared, settings, signer, test=True)
        try:
            reply = asyncio.run(send_test(factory, settings.smtp, address))
        except TransportError as exc:
            raise SendPaused(f"test not sent: {exc}; check [smtp] in newsletter.toml") from None
        typer.echo(f"Test copy to {address}: {reply}")
        raise typer.Exit(0 if reply.ok else 1)

    store = Store(db.connect(settings), bounce_limit=settings.smtp.bounce_limit)
    existing = store.find(prepared.slug)
    if existing and existing.state == SendState.done:
        typer.echo(f"{prepared.slug}: already sent ({existing.finished_at:%Y-%m-%d %H:%M}).")
        typer.echo(f"See: newsletter status {prepared.slug}")
        return
    if dry_run:
        _dry_run(store, prepared, settings, signer, existing)
        return
    with store.exclusive(prepared.slug):
        _send(store, prepared, existing, settings, signer, issue, yes)


def _send(store, prepared, existing, settings, signer, issue, yes) -> None:
    from newsletter.mail.message import MessageFactory
    from newsletter.service.runner import SendPaused
    from newsletter.storage.models import DeliveryState, SendState

    smtp = settings.smtp
    if existing:
        store.drop_departed(existing.id)
        left = store.counts(existing.id)[DeliveryState.pending]
        question = f"Resume '{existing.subject}': {left} of {existing.total} still to send"
    else:
        left = store.active_count()
        if left == 0:
            raise SendPaused(
                "not sent: there are no active subscribers; add some with 'newsletter "
                "subscribers add' or 'import' (or check [database] url)"
            )
        question = f"Send '{prepared.subject}' to {left} active subscriber(s)"
    where = f"via {smtp.host}:{smtp.port}" + (f" at {smtp.rate:g}/s" if smtp.rate else "")
    typer.echo(f"{question} {where}.")
    if not yes and not typer.confirm("Send now?", default=False):
        typer.echo("Not sent.")
        raise typer.Exit(1)
    info = store.start(prepared)
    factory = MessageFactory(info.prepared, settings, signer)
    resume = f"Run 'newsletter send {issue}' again to resume"
    try:
        report = _run_with_progress(store, info, factory, smtp, info.total - left)
    except KeyboardInterrupt:
        typer.echo(
            f"Stopped at once. {resume}; a message in flight at that moment may arrive "
            "twice, with the same Message-ID.",
            err=True,
        )
        raise typer.Exit(130) from None
    store.drop_departed(info.id)
    counts = store.counts(info.id)
    if report.paused:
        store.finish(info.id, SendState.paused)
        raise SendPaused(
            f"send paused: {report.paused}; fix the cause. {resume} (nobody gets it twice)."
        )
    summary = (
        f"{counts[DeliveryState.sent]} sent, {counts[DeliveryState.bounced]} bounced, "
        f"{counts[DeliveryState.failed]} failed"
    )
    if report.stopped or counts[DeliveryState.pending]:
        typer.echo(f"Stopped: {summary}, {counts[DeliveryState.pending]} to go. {resume}.")
        raise typer.Exit(130 if report.stopped else 1)
    store.finish(info.id, SendState.done)
    typer.echo(f"Done: {summary}. Details: newsletter status {info.slug}")


def _run_with_progress(store, info, factory, smtp, already: int):
    import asyncio
    import contextlib

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from newsletter.service.runner import Sender

    console = Console(stderr=True)
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7} msg/s"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("Sending", total=info.total, completed=already, rate="–")
        started = time.monotonic()
        done = 0

        def on_progress(finished: int) -> None:
            nonlocal done
            done += finished
            rate = done / max(time.monotonic() - started, 1e-6)
            progress.update(task, advance=finished, rate=f"{rate:,.0f}")

        async def main():
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()

            def first_interrupt(number: int) -> None:
                # Ctrl-C: finish the messages in flight, record them, then stop; a
                # second Ctrl-C stops at once (KeyboardInterrupt).
                stop.set()
                loop.remove_signal_handler(number)
                console.print("Stopping after the messages in flight (Ctrl-C again: at once)…")

            for number in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
                    loop.add_signal_handler(number, first_interrupt, number)  # main thread only
            sender = Sender(store, info, factory, smtp, on_progress=on_progress)
            return await sender.run(stop)

        return asyncio.run(main())


def _dry_run(store, prepared, settings, signer, existing) -> None:
    from newsletter.mail.message import MessageFactory, Recipient

    factory = MessageFactory(existing.prepared if existing else prepared, settings, signer)
    started = time.perf_counter()
    count = size = 0
    if existing:
        recipients = (
            Recipient(p.subscriber_id, p.email, p.name) for p in store.iter_pending(existing.id)
        )
    else:
        recipients = store.active_recipients()
    for recipient in recipients:
        size += len(factory.build(recipient))
        count += 1
    elapsed = time.perf_counter() - started
    per = f", {elapsed / count * 1e6:.0f} µs each" if count else ""
    typer.echo(
        f"Dry run: built {count} message(s), {size / 1e6:.1f} MB in {elapsed:.2f} s{per}; "
        "nothing was sent or recorded."
    )


@app.command(epilog="Example: newsletter status 2026-11-24-survival-of-the-fittest-funnel")
@reports_errors
def status(
    issue: Annotated[
        str | None, typer.Argument(metavar="[ISSUE]", help="Issue slug or file.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Counts per delivery state, and the failures with the server's replies."""
    from newsletter.compose.issue import IssueError
    from newsletter.config import load_config
    from newsletter.storage import db
    from newsletter.storage.delivery_log import Store

    settings = load_config(config)
    store = Store(db.connect(settings))
    if issue is None:
        sends = store.sends()
        if not sends:
            typer.echo("Nothing sent yet.")
        for info in sends:
            counts = store.counts(info.id)
            typer.echo(
                f"{info.slug}  {info.state.value:<8} "
                + "  ".join(f"{state.value} {n}" for state, n in counts.items())
            )
        return
    slug = Path(issue).stem
    info = store.find(slug)
    if info is None:
        raise IssueError(f"{slug}: has not been sent; send it with 'newsletter send {issue}'")
    typer.echo(f"{info.slug}: {info.state.value}, started {info.started_at:%Y-%m-%d %H:%M}")
    for state, n in store.counts(info.id).items():
        typer.echo(f"  {state.value:<8} {n}")
    problems = store.problems(info.id, PROBLEMS_SHOWN)
    if problems:
        typer.echo("Not delivered (yet):")
        for email, state, attempts, reply in problems:
            typer.echo(f"  {email}  {state.value}  after {attempts} attempt(s): {reply}")
        if len(problems) == PROBLEMS_SHOWN:
            typer.echo(f"  (the first {PROBLEMS_SHOWN} are shown)")


@app.command("sink", epilog="Example: newsletter sink --port 2525 --out outbox")
@reports_errors
def sink_(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 2525,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    out: Annotated[Path, typer.Option(help="Folder for the .eml files.")] = Path("outbox"),
) -> None:
    """A local SMTP server that keeps every message as an .eml file (Ctrl-C stops it)."""
    from newsletter.devtools import sink

    controller, handler = sink.start(host, port, out)
    typer.echo(f"Listening on {host}:{port}; messages go to {out}/. Ctrl-C stops.", err=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
    typer.echo(f"Sink stopped: {handler.received} message(s) in {out}/.", err=True)
