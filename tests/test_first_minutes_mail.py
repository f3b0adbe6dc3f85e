"""Test copies to test inboxes, the name we give in EHLO, and the settings `check`
and every send refuse (or warn about) before the first connection."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import pytest
from conftest import use_smtp
from smtp_server import ScriptedHandler, SmtpServer

from newsletter.config import ConfigError, load_config
from newsletter.mail import transport
from newsletter.service.outbox import deliver_due
from newsletter.storage import db
from newsletter.storage.outbox import enqueue
from newsletter.storage.subscribers import SubscriberError, normalize_email

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"


@dataclass
class RecordingHandler(ScriptedHandler):
    helos: list[str] = field(default_factory=list)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.helos.append(hostname)
        return await super().handle_EHLO(server, session, envelope, hostname, responses)


@pytest.fixture
def server():
    smtp = SmtpServer()
    smtp.handler = smtp.controller.handler = RecordingHandler()
    with smtp:
        yield smtp


def edit(folder, old: str, new: str) -> None:
    path = folder / "newsletter.toml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def line_of(folder, start: str) -> int:
    lines = (folder / "newsletter.toml").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.startswith(start))


# send --test-to: any syntactically valid address


@pytest.mark.parametrize(
    "address, expected",
    [
        ("Me@Inbox.TEST", "me@inbox.test"),
        ("qa@mail.local", "qa@mail.local"),
        ("root@localhost", "root@localhost"),
        ("me@bücher.local", "me@xn--bcher-kva.local"),
    ],
)
def test_a_test_address_may_be_on_a_special_use_domain(address, expected):
    assert normalize_email(address, test_address=True) == expected
    with pytest.raises(SubscriberError, match=r"special-use|should have a period"):
        normalize_email(address)  # a subscriber's address may not


@pytest.mark.parametrize("address", ["nobody", "me@-x.local", "me@a..local", "a b@x.test"])
def test_a_test_address_still_needs_a_valid_syntax(address):
    with pytest.raises(SubscriberError, match="is not a valid email address") as caught:
        normalize_email(address, test_address=True)
    assert ".test.test" not in str(caught.value) and "local.test" not in str(caught.value)


def test_send_test_to_a_dot_local_inbox(cli, folder, server):
    use_smtp(folder, server.port)
    result = cli("send", ISSUE, "--test-to", "QA@Inbox.Local")
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout.startswith("Test copy to qa@inbox.local: 250")
    (copy,) = server.handler.received
    assert copy.rcpt == "qa@inbox.local" and copy.message["To"] == "qa@inbox.local"
    # The list itself keeps the strict rule.
    result = cli("subscribers", "add", "qa@inbox.local")
    assert result.exit_code == 1 and "special-use" in result.stderr


# EHLO: the machine's name or [smtp] helo_name, never the From domain


def test_ehlo_gives_the_machine_name_not_the_from_domain(cli, folder, server):
    use_smtp(folder, server.port)
    assert cli("send", ISSUE, "--test-to", "me@example.com").exit_code == 0
    assert server.handler.helos == [transport.machine_name()]
    assert "news.example.com" not in server.handler.helos


def test_helo_name_setting_is_used_by_sends_test_copies_and_transactional_mail(cli, folder, server):
    use_smtp(folder, server.port, helo_name='"mail.example.org"')
    cli("subscribers", "add", "ana@example.com")
    cli("subscribers", "add", "bo@example.com")
    assert cli("send", ISSUE, "--test-to", "me@example.com").exit_code == 0
    assert cli("send", ISSUE, "--yes").exit_code == 0
    config = load_config(folder / "newsletter.toml", environ={})
    engine = db.connect(config)
    enqueue(engine, "welcome", "cy@example.com", None, {})
    assert deliver_due(config, engine) == ["welcome mail to cy@example.com: sent"]
    assert len(server.handler.helos) >= 3
    assert set(server.handler.helos) == {"mail.example.org"}


def test_a_machine_without_a_usable_name_says_localhost(monkeypatch):
    # The one thing that cannot be arranged for real here: this machine's name.
    for name, expected in [("host_1.lan", "localhost"), ("mail.example.org", "mail.example.org")]:
        monkeypatch.setattr(socket, "getfqdn", lambda name=name: name)
        transport.machine_name.cache_clear()
        try:
            assert transport.machine_name() == expected
        finally:
            transport.machine_name.cache_clear()


@pytest.mark.parametrize("value", ["mail example.org", "-mail.example.org", "[not an ip]x"])
def test_a_bad_helo_name_is_a_config_error(folder, value):
    with pytest.raises(ConfigError) as caught:
        load_config(folder / "newsletter.toml", environ={"NEWSLETTER_SMTP_HELO_NAME": value})
    assert str(caught.value).startswith("NEWSLETTER_SMTP_HELO_NAME: smtp.helo_name: ")
    assert "is not a host name" in str(caught.value)


def test_address_literal_is_a_helo_name(folder):
    config = load_config(
        folder / "newsletter.toml", environ={"NEWSLETTER_SMTP_HELO_NAME": "[192.0.2.1]"}
    )
    assert transport.helo_name(config.smtp) == "[192.0.2.1]"


# check and send: a login without a password


def test_username_without_password_is_caught_before_any_connection(cli, folder, server):
    use_smtp(folder, server.port, username='"dana"')
    line = line_of(folder, "username =")
    result = cli("check", ISSUE)
    assert result.exit_code == 1
    assert (
        f"newsletter.toml:{line}: error: smtp.username is 'dana' but no password is set"
        in result.output
    )
    assert "set NEWSLETTER_SMTP_PASSWORD, or put password" in result.output
    assert "Checked 1 issue(s): 1 error(s)" in result.output
    cli("subscribers", "add", "ana@example.com")
    for args in (["--yes"], ["--test-to", "me@example.com"], ["--dry-run"]):
        result = cli("send", ISSUE, *args)
        assert result.exit_code == 1, args
        assert "not sent, 'newsletter check' finds 1 error(s)" in result.stderr
        assert f"newsletter.toml:{line}: smtp.username is 'dana'" in result.stderr
    assert server.handler.sessions == 0


def test_a_password_from_the_environment_or_secrets_satisfies_the_check(cli, folder, monkeypatch):
    edit(folder, "# username", "username")
    assert "smtp.username" in cli("check", ISSUE).output
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "s3cret")
    assert "smtp.username" not in cli("check", ISSUE).output
    monkeypatch.delenv("NEWSLETTER_SMTP_PASSWORD")
    secrets = folder / "secrets.toml"
    secrets.write_text(
        secrets.read_text().replace('# [smtp]\n# password = "…"', '[smtp]\npassword = "x"')
    )
    result = cli("check", ISSUE)
    assert "smtp.username" not in result.output and result.exit_code == 0


# check and send: base_url must be https (plain http only on this machine, with a warning)


def test_a_plain_http_base_url_is_an_error_that_stops_a_send(cli, folder, server):
    use_smtp(folder, server.port)
    edit(folder, 'base_url = "https://news.example.com"', 'base_url = "http://news.example.com"')
    line = line_of(folder, "base_url =")
    result = cli("check", ISSUE)
    assert result.exit_code == 1
    assert (
        f"newsletter.toml:{line}: error: newsletter.base_url 'http://news.example.com' is not "
        "https" in result.output
    )
    assert "RFC 8058" in result.output and "https://news.example.com" in result.output
    cli("subscribers", "add", "ana@example.com")
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 1 and "base_url" in result.stderr
    assert server.handler.sessions == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000",
        "http://127.0.0.1:8000/news",
        "http://[::1]:8000",
        "http://a.localhost",
    ],
)
def test_plain_http_on_this_machine_is_only_a_warning(cli, folder, url, server, monkeypatch):
    use_smtp(folder, server.port)
    monkeypatch.setenv("NEWSLETTER_NEWSLETTER_BASE_URL", url)
    result = cli("check", ISSUE)
    assert result.exit_code == 0, result.output
    assert (
        f"NEWSLETTER_NEWSLETTER_BASE_URL: warning: newsletter.base_url {url!r} is plain http "
        "on this machine" in result.output
    )
    assert cli("check", "--strict", ISSUE).exit_code == 1
    cli("subscribers", "add", "ana@example.com")
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 0, result.stderr
    assert "warning: NEWSLETTER_NEWSLETTER_BASE_URL: newsletter.base_url" in result.stderr
    assert len(server.handler.received) == 1


def test_https_base_url_has_no_finding(cli, folder):
    assert "base_url" not in cli("check", ISSUE).output
