"""Sending through a real SMTP server on loopback, with scripted faults."""

from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest
from conftest import use_smtp
from smtp_server import SmtpServer, free_port
from sqlalchemy import select

from newsletter.config import load_config
from newsletter.mail.message import MessageFactory
from newsletter.service import sending as service
from newsletter.service.runner import Runner
from newsletter.storage import db
from newsletter.storage.delivery_log import DeliveryLog, exclusive
from newsletter.storage.models import Delivery, Subscriber
from newsletter.storage.subscribers import add
from newsletter.tokens import Signer, secret_of

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
SLUG = "2026-11-24-survival-of-the-fittest-funnel"

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def sending(cli, folder, smtp):
    use_smtp(folder, smtp.port)
    for name in ["Ana", "Bo", "Cy"]:
        assert (
            cli("subscribers", "add", f"{name.lower()}@example.com", "--name", name).exit_code == 0
        )
    return smtp


def deliveries(folder) -> dict[str, tuple[str, int, str | None]]:
    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:
        return {
            d.email: (d.state.value, d.attempts, d.last_reply)
            for d in s.scalars(select(Delivery).order_by(Delivery.id))
        }


def subscriber_status(folder, email: str) -> str:
    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email == email)).value


def test_send_reaches_every_active_subscriber_once(cli, folder, sending):
    cli("subscribers", "add", "gone@example.com")
    cli("subscribers", "remove", "gone@example.com")
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 0, result.output
    assert "Send 'The Pipeline Weekly: Survival of the Fittest Funnel' to 3 active" in result.output
    assert "Done: 3 sent, 0 bounced, 0 failed." in result.output
    received = sending.handler.by_rcpt()
    assert sorted(received) == ["ana@example.com", "bo@example.com", "cy@example.com"]
    ana = received["ana@example.com"][0].message
    assert ana["To"] == "Ana <ana@example.com>"
    assert "Hi Ana," in ana.get_body(("plain",)).get_content()
    assert ana["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    recorded = deliveries(folder)
    assert {state for state, _, _ in recorded.values()} == {"sent"}
    again = cli("send", ISSUE, "--yes")
    assert again.exit_code == 0 and "already sent" in again.output
    assert len(sending.handler.received) == 3


@pytest.mark.parametrize("code", [451, 452, 552, 421])
def test_temporary_refusal_is_retried_then_sent(cli, folder, sending, code):
    sending.handler.script("bo@example.com", code, 250)
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 0, result.output
    assert deliveries(folder)["bo@example.com"][:2] == ("sent", 2)
    assert len(sending.handler.by_rcpt()["bo@example.com"]) == 1


def test_temporary_refusal_that_persists_fails_after_the_limit(cli, folder, sending):
    sending.handler.script("bo@example.com", 452)
    result = cli("send", ISSUE, "--yes")
    assert "Done: 2 sent, 0 bounced, 1 failed." in result.output
    state, attempts, reply = deliveries(folder)["bo@example.com"]
    assert (state, attempts) == ("failed", 3)
    assert "452 scripted reply" in reply
    status = cli("status", SLUG).output
    assert "failed   1" in status
    assert "bo@example.com  failed  after 3 attempt(s): 452 scripted reply" in status
    assert subscriber_status(folder, "bo@example.com") == "active"
    # Who sent it and through which relay, as the log recorded them; a finished send
    # shows no speed.
    workers = status.split("Workers:\n", 1)[1].splitlines()
    assert workers[1].split()[-4:-1] == [str(os.getpid()), "2", "1"]  # pid, sent, failed
    relays = status.split("Relays:\n", 1)[1].splitlines()
    assert relays[1].split()[:3] == [f"127.0.0.1:{sending.port}", "2", "1"]
    assert "Speed:" not in status


def test_permanent_refusal_bounces_and_stops_the_subscriber(cli, folder, sending):
    sending.handler.script("cy@example.com", 550)
    result = cli("send", ISSUE, "--yes")
    assert "Done: 2 sent, 1 bounced, 0 failed." in result.output
    assert deliveries(folder)["cy@example.com"][:2] == ("bounced", 1)
    assert subscriber_status(folder, "cy@example.com") == "bounced"
    assert "cy@example.com" not in sending.handler.by_rcpt()


def test_dropped_connection_is_retried_on_a_new_connection(cli, folder, sending):
    sending.handler.script("ana@example.com", "drop", 250, at="data")
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 0, result.output
    assert deliveries(folder)["ana@example.com"][:2] == ("sent", 2)
    assert len(sending.handler.by_rcpt()["ana@example.com"]) == 1


def test_server_that_keeps_refusing_pauses_the_send_and_it_resumes(cli, folder, sending):
    port = free_port()  # nothing listens here yet
    use_smtp(folder, port)
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 1
    assert "error: send paused: 3 connection failures in a row" in result.stderr
    assert "Run 'newsletter send" in result.stderr and "again to resume" in result.stderr
    assert {s for s, _, _ in deliveries(folder).values()} == {"pending"}
    assert "paused" in cli("status").output
    with SmtpServer(port) as server:
        resumed = cli("send", ISSUE, "--yes")
        assert resumed.exit_code == 0, resumed.output
        assert (
            "Resume 'The Pipeline Weekly: Survival of the Fittest Funnel': 3 of 3" in resumed.output
        )
        assert sorted(server.handler.by_rcpt()) == [
            "ana@example.com",
            "bo@example.com",
            "cy@example.com",
        ]


def test_dry_run_builds_everything_and_sends_nothing(cli, folder, sending):
    result = cli("send", ISSUE, "--dry-run")
    assert result.exit_code == 0
    assert "Dry run: built 3 message(s)" in result.output
    assert "nothing was sent or recorded" in result.output
    assert sending.handler.received == []
    assert cli("status").output == "Nothing sent yet.\n"


def test_test_copy_goes_to_one_address_and_is_not_recorded(cli, folder, sending):
    result = cli("send", ISSUE, "--test-to", "Editor@Example.com")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Test copy to editor@example.com: 250")
    (copy,) = sending.handler.received
    assert copy.rcpt == "editor@example.com"
    assert copy.message["Subject"].startswith("[TEST] ")
    assert cli("status").output == "Nothing sent yet.\n"


def test_send_asks_before_sending(cli, folder, sending):
    from typer.testing import CliRunner

    from newsletter.cli import app

    result = CliRunner().invoke(app, ["send", ISSUE], input="n\n")
    assert result.exit_code == 1 and "Not sent." in result.output
    assert sending.handler.received == []
    result = CliRunner().invoke(app, ["send", ISSUE], input="y\n")
    assert result.exit_code == 0 and len(sending.handler.received) == 3


def test_a_send_with_nobody_to_answer_says_to_add_yes(cli, folder, sending):
    """cron or a script without --yes: no terminal to ask on, and nothing sent."""
    from typer.testing import CliRunner

    from newsletter.cli import app

    result = CliRunner().invoke(app, ["send", ISSUE], input="")
    assert result.exit_code == 1
    assert "error: no answer to 'Send now?': there is no terminal to ask on; add --yes" in (
        result.stderr
    )
    assert "Aborted!" not in result.output and "Traceback" not in result.output
    assert sending.handler.received == []


def test_issue_with_check_errors_is_not_sent(cli, folder, sending):
    path = folder / ISSUE
    path.write_text(path.read_text().replace("## The Quote Darwin", "## TODO The Quote Darwin"))
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 1
    assert "not sent, 'newsletter check' finds 1 error(s); fix them first" in result.stderr
    assert sending.handler.received == []


def test_send_without_a_signing_secret_is_refused(cli, folder, sending):
    (folder / "secrets.toml").unlink()
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 1
    # After the warnings about the demo identity the test folder still has.
    assert "\nerror: web.secret_key: is not set" in "\n" + result.stderr


def started(folder, log_class=DeliveryLog):
    """A send started (its snapshot taken) and a runner for it, as `send` makes them."""
    config = load_config(folder / "newsletter.toml", environ={})
    log = log_class(db.connect(config))
    record = log.start(service.new_send(service.plan(config, folder / ISSUE)))
    prepared = service.stored_prepared(record, "there")
    factory = MessageFactory(prepared, config, Signer(secret_of(config)))
    return log, Runner(log, record.id, factory, config.smtp)


def test_people_who_join_mid_send_get_the_next_issue(folder, sending):
    log, runner = started(folder)  # the snapshot
    with db.session(log.engine) as s:
        add(s, "late@example.com", "Late")
    report = asyncio.run(runner.run())
    assert report.sent == 3
    assert "late@example.com" not in sending.handler.by_rcpt()


def _authenticator(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult

    ok = auth_data.login == b"dana" and auth_data.password == b"right-password"
    return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize("password", ["right-password", "wrong-password"])
def test_login_uses_the_password_from_the_environment(cli, folder, monkeypatch, password):
    cli("subscribers", "add", "ana@example.com")
    with SmtpServer(authenticator=_authenticator, auth_require_tls=False) as server:
        use_smtp(folder, server.port, username='"dana"')
        monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", password)
        result = cli("send", ISSUE, "--yes")
        if password == "right-password":
            assert result.exit_code == 0, result.output
            assert len(server.handler.received) == 1
        else:
            assert result.exit_code == 1
            assert "send paused: login as 'dana' refused: 535" in result.stderr
            assert password not in result.output
            assert server.handler.received == []


def test_sink_keeps_each_message_as_an_eml_file(tmp_path):
    import smtplib
    import subprocess
    import sys
    import time

    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "sink", "--port", str(port), "--out", "box"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client = smtplib.SMTP("127.0.0.1", port, timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and sink.poll() is None
                time.sleep(0.05)
        with client:
            assert "pipelining" in client.ehlo()[1].decode().lower()
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nbody\r\n")
    finally:
        sink.terminate()
        _, err = sink.communicate(timeout=10)
    (eml,) = (tmp_path / "box").glob("*.eml")
    assert b"Subject: hi" in eml.read_bytes()
    assert "Sink stopped: 1 message(s) in box/." in err


def test_a_message_that_cannot_be_built_fails_alone(cli, folder, sending):
    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:  # a name that slipped past validation (an old import, say)
        s.execute(
            Subscriber.__table__.update()
            .where(Subscriber.email == "bo@example.com")
            .values(name="Bo\r\nBcc: victim@example.com")
        )
    result = cli("send", ISSUE, "--yes")
    assert "Done: 2 sent, 0 bounced, 1 failed." in result.output
    state, _, reply = deliveries(folder)["bo@example.com"]
    assert state == "failed" and reply.startswith("not sent: name:")
    assert "victim@example.com" not in {r.rcpt for r in sending.handler.received}


def test_a_surprise_error_pauses_the_send_instead_of_hanging(cli, folder, sending, monkeypatch):
    from newsletter.mail import message

    async def explode(self, recipient):
        raise RuntimeError("surprise")

    monkeypatch.setattr(message.MessageFactory, "build_async", explode)
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 1
    assert "send paused: unexpected error (RuntimeError: surprise)" in result.stderr
    assert {s for s, _, _ in deliveries(folder).values()} == {"pending"}


def test_a_failed_log_write_pauses_and_loses_nothing(folder, sending):
    class Flaky(DeliveryLog):
        """The send's writer refuses its first commit, as a locked database would."""

        failures = 1

        def writer(self):
            writer = super().writer()
            real = writer.record

            def record(results):
                if self.failures:
                    self.failures -= 1
                    raise sqlite3.OperationalError("database is locked")
                real(results)

            writer.record = record
            return writer

    _, runner = started(folder, Flaky)
    report = asyncio.run(runner.run())
    assert "cannot write the delivery log (database is locked)" in report.paused
    assert report.unrecorded == 0  # the refused results were written once the log took them
    recorded = deliveries(folder)
    sent_now = {r.rcpt for r in sending.handler.received}
    # Every message the server took is recorded as sent: the failed batch was kept.
    assert {e for e, (s, _, _) in recorded.items() if s == "sent"} == sent_now


def test_a_second_send_of_the_same_issue_is_refused(cli, folder, sending):
    config = load_config(folder / "newsletter.toml", environ={})
    with exclusive(db.connect(config), SLUG):
        result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 1
    assert "another 'newsletter send' of this issue is running" in result.stderr
    assert sending.handler.received == []


def test_who_unsubscribes_during_a_pause_is_skipped_on_resume(cli, folder, sending):
    port = free_port()
    use_smtp(folder, port)
    assert cli("send", ISSUE, "--yes").exit_code == 1  # paused: nothing listens
    assert {a for _, a, _ in deliveries(folder).values()} == {0}  # no attempt charged
    cli("subscribers", "remove", "bo@example.com")
    with SmtpServer(port) as server:
        result = cli("send", ISSUE, "--yes")
        assert "Done: 2 sent, 0 bounced, 0 failed, 1 skipped" in result.output, result.output
        assert sorted(server.handler.by_rcpt()) == ["ana@example.com", "cy@example.com"]
    state, _, reply = deliveries(folder)["bo@example.com"]
    assert state == "skipped" and reply.startswith("not sent: unsubscribed")


def test_an_empty_list_is_not_marked_sent(cli, folder, smtp):
    use_smtp(folder, smtp.port)
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 1
    assert "not sent: there are no active subscribers" in result.stderr
    assert cli("status").output == "Nothing sent yet.\n"


def test_dry_run_and_test_copy_together_are_refused(cli, sending):
    result = cli("send", ISSUE, "--dry-run", "--test-to", "me@example.com")
    assert result.exit_code == 1 and "choose one" in result.stderr
    assert sending.handler.received == []


def test_international_domain_is_stored_and_sent_as_punycode(cli, folder, sending):
    assert cli("subscribers", "add", "leser@bücher.de").output == "Added leser@xn--bcher-kva.de.\n"
    assert cli("send", ISSUE, "--yes").exit_code == 0
    assert "leser@xn--bcher-kva.de" in sending.handler.by_rcpt()


def test_ctrl_c_stops_after_messages_in_flight_and_resume_finishes(cli, folder, smtp):
    import os
    import signal
    import subprocess
    import sys
    import time

    use_smtp(folder, smtp.port, rate=150)
    (folder / "list.csv").write_text("email\n" + "".join(f"r{i}@example.com\n" for i in range(600)))
    cli("subscribers", "import", "list.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    command = [sys.executable, "-m", "newsletter", "send", ISSUE, "--yes"]
    process = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while len(smtp.handler.received) < 100:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "to go. Run 'newsletter send" in out
    resumed = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=60
    )
    assert resumed.returncode == 0, resumed.stderr
    by_rcpt = smtp.handler.by_rcpt()
    assert len(by_rcpt) == 600
    assert all(len(copies) == 1 for copies in by_rcpt.values())  # a clean stop: no repeats


def test_starttls_is_used_and_the_certificate_verified(cli, folder, tmp_path):
    import ssl
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    cli("subscribers", "add", "ana@example.com")
    with SmtpServer(tls_context=context, require_starttls=True) as server:
        use_smtp(folder, server.port, security='"starttls"')
        refused = cli("send", ISSUE, "--yes")  # the self-signed certificate is not trusted
        assert refused.exit_code == 1 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
        use_smtp(folder, server.port, security='"starttls"', ca_file=f'"{cert}"')
        trusted = cli("send", ISSUE, "--yes")
        assert trusted.exit_code == 0, trusted.output
        assert len(server.handler.received) == 1


def test_a_full_disk_stops_the_send_and_resume_sends_nobody_twice(cli, folder, smtp):
    """The log refuses every write from some point on (the disk filled up): the send
    stops at once, keeps the few results it could not write beside the database, and
    the resume, on a disk with room again, sends each reader exactly one copy."""
    use_smtp(folder, smtp.port, connections=3)
    (folder / "list.csv").write_text("email\n" + "".join(f"r{i}@example.com\n" for i in range(120)))
    assert cli("subscribers", "import", "list.csv").exit_code == 0

    class DiskFills(DeliveryLog):
        room = 40  # results written before the disk is full

        def writer(self):
            writer = super().writer()
            real = writer.record

            def record(results):
                if self.room < len(results):
                    raise sqlite3.OperationalError("database or disk is full")
                self.room -= len(results)
                real(results)

            writer.record = record
            return writer

    config = load_config(folder / "newsletter.toml", environ={})
    plan = service.plan(config, folder / ISSUE)
    outcome = service.run(plan, log=DiskFills(db.connect(config)))
    assert outcome.report.paused.startswith("cannot write the delivery log (database or disk")
    assert 0 < outcome.report.unrecorded <= 3  # one per connection at most
    assert len(smtp.handler.received) < 120  # it stopped, it did not push on

    result = cli("send", ISSUE, "--yes")
    assert "Done: 120 sent, 0 bounced, 0 failed." in result.output, result.output
    copies = smtp.handler.by_rcpt()
    assert len(copies) == 120
    assert [r for r, c in copies.items() if len(c) != 1] == []


def test_a_100_kb_reply_line_is_a_temporary_failure_not_a_traceback(cli, folder, sending):
    sending.handler.script("ana@example.com", "451 " + "x" * 100_000, 250)
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 0, result.output
    assert "Done: 3 sent, 0 bounced, 0 failed." in result.output
    assert deliveries(folder)["ana@example.com"][:2] == ("sent", 2)  # retried once


def test_an_issue_edited_while_paused_resumes_the_version_already_sent(cli, folder, sending):
    port = free_port()
    use_smtp(folder, port, connections=1)
    assert cli("send", ISSUE, "--yes").exit_code == 1  # paused: nothing listens yet
    path = folder / ISSUE
    path.write_text(path.read_text().replace("Survival of the Fittest", "Edited Title"))
    with SmtpServer(port) as server:
        result = cli("send", ISSUE, "--yes")
        assert result.exit_code == 0, result.output
        subjects = {copy.message["Subject"] for copy in server.handler.received}
    assert "the issue file changed since this send started" in result.stderr
    assert "save it under a new file name" in result.stderr
    assert subjects == {"The Pipeline Weekly: Survival of the Fittest Funnel"}
