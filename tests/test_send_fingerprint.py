"""A send keeps a fingerprint of the settings that shape its messages (From, Reply-To,
links, DKIM, bounce address, the signing secret): a worker on another host, or the
editor resuming, with other settings is refused, so that readers never get a second
Message-ID or unsubscribe links the web server rejects."""

from __future__ import annotations

import shutil

import pytest
from conftest import POSTGRES_URL, use_smtp
from processes import start_worker
from smtp_server import SmtpServer, free_port
from sqlalchemy import select, update

from newsletter.config import load_config
from newsletter.service import sending
from newsletter.service.fingerprint import fingerprint
from newsletter.storage import db
from newsletter.storage.models import Delivery, Send, SendState

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
SLUG = "2026-11-24-survival-of-the-fittest-funnel"
DIFFER = (
    f"{SLUG}: this host's settings differ from those the send started with ([web] "
    "secret_key, [sender], [newsletter] base_url, [dkim] or [bounces] address); give every "
    "host the same newsletter.toml and secrets, then run this again"
)
OTHER_SECRET = "another-secret-of-at-least-16-characters"


def settings(folder, **environ):
    return load_config(folder / "newsletter.toml", environ=environ)


def stored(folder) -> tuple[SendState, str | None]:
    with db.session(db.connect(settings(folder))) as s:
        row = s.scalar(select(Send))
        return row.state, row.fingerprint


def change(folder, old: str, new: str, name: str = "newsletter.toml") -> None:
    path = folder / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


# The fingerprint ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable, value",
    [
        ("NEWSLETTER_WEB_SECRET_KEY", OTHER_SECRET),
        ("NEWSLETTER_SENDER_FROM_ADDRESS", "dana@other.example.com"),
        ("NEWSLETTER_SENDER_FROM_NAME", "Someone Else"),
        ("NEWSLETTER_SENDER_REPLY_TO", "other@example.com"),
        ("NEWSLETTER_NEWSLETTER_BASE_URL", "https://letters.example.com"),
        ("NEWSLETTER_BOUNCES_ADDRESS", "bounces@news.example.com"),
    ],
)
def test_each_setting_that_shapes_a_message_changes_the_fingerprint(folder, variable, value):
    mine = fingerprint(settings(folder))
    assert len(mine) == 64 and int(mine, 16) >= 0
    assert fingerprint(settings(folder)) == mine  # stable
    assert fingerprint(settings(folder, **{variable: value})) != mine


def test_the_dkim_key_counts_by_its_bytes_and_other_settings_do_not_count(folder):
    (folder / "a.pem").write_bytes(b"key one")
    (folder / "b.pem").write_bytes(b"key two")
    dkim = {"NEWSLETTER_DKIM_SELECTOR": "s1", "NEWSLETTER_DKIM_DOMAIN": "news.example.com"}
    unsigned = fingerprint(settings(folder))
    one = fingerprint(settings(folder, **dkim, NEWSLETTER_DKIM_KEY_FILE="a.pem"))
    two = fingerprint(settings(folder, **dkim, NEWSLETTER_DKIM_KEY_FILE="b.pem"))
    (folder / "c.pem").write_bytes(b"key one")  # the same key under another name
    same = fingerprint(settings(folder, **dkim, NEWSLETTER_DKIM_KEY_FILE="c.pem"))
    assert len({unsigned, one, two}) == 3
    assert same == one
    # A relay, a rate or a trailing slash on base_url change no message.
    assert (
        fingerprint(
            settings(
                folder,
                NEWSLETTER_SMTP_HOST="mx.elsewhere.example.com",
                NEWSLETTER_SMTP_CONNECTIONS="9",
                NEWSLETTER_NEWSLETTER_BASE_URL="https://news.example.com/",
            )
        )
        == unsigned
    )


# The editor's resume, on SQLite and PostgreSQL -----------------------------------------


@pytest.fixture
def paused(cli, folder, backend):
    """A send of three that paused (nobody listened), and the port it will resume on."""
    port = free_port()
    use_smtp(folder, port)
    for name in ["ana", "bo", "cy"]:
        assert cli("subscribers", "add", f"{name}@example.com").exit_code == 0
    assert cli("send", ISSUE, "--yes").exit_code == 1  # paused: nothing listens
    assert stored(folder) == (SendState.paused, fingerprint(settings(folder)))
    return port


def test_a_resume_with_another_from_is_refused_and_sends_nothing(cli, folder, paused):
    change(folder, 'from_address = "dana@news.example.com"', 'from_address = "d@x.example.com"')
    with SmtpServer(paused) as server:
        result = cli("send", ISSUE, "--yes")
        assert result.exit_code == 1
        assert f"error: {DIFFER}\n" in result.stderr
        assert "Traceback" not in result.output + result.stderr
        assert server.handler.received == []
        assert stored(folder)[0] == SendState.paused  # left as it was
        # The same settings again: it resumes.
        change(folder, 'from_address = "d@x.example.com"', 'from_address = "dana@news.example.com"')
        result = cli("send", ISSUE, "--yes")
        assert result.exit_code == 0, result.output + result.stderr
        assert len(server.handler.received) == 3


def test_a_retry_with_another_secret_is_refused(cli, folder, paused):
    change(folder, "secret_key = ", f'secret_key = "{OTHER_SECRET}"\n# was = ', "secrets.toml")
    result = cli("send", ISSUE, "--retry-failed", "--yes")
    assert result.exit_code == 1
    assert f"error: {DIFFER}\n" in result.stderr


def test_a_send_started_before_fingerprints_were_kept_resumes_and_keeps_the_new_one(
    cli, folder, paused
):
    with db.session(db.connect(settings(folder))) as s:
        s.execute(update(Send).values(fingerprint=None))
    change(folder, 'from_address = "dana@news.example.com"', 'from_address = "d@x.example.com"')
    with SmtpServer(paused) as server:
        result = cli("send", ISSUE, "--yes")
        assert result.exit_code == 0, result.output + result.stderr
        assert len(server.handler.received) == 3
    assert stored(folder) == (SendState.done, fingerprint(settings(folder)))


def test_settings_changed_after_the_plan_are_refused_when_the_send_resumes(folder, paused):
    """The check at the start, under the issue's lock, holds even when the plan (and the
    editor's yes) came before another host resumed the send with its settings."""
    plan = sending.plan(settings(folder), folder / ISSUE)
    with db.session(db.connect(settings(folder))) as s:
        s.execute(update(Send).values(fingerprint="0" * 64))  # another host's settings
    with pytest.raises(sending.SettingsDiffer, match="settings differ"):
        sending.run(plan)
    assert stored(folder) == (SendState.paused, "0" * 64)


# A worker on another host (PostgreSQL) ------------------------------------------------


@pytest.mark.skipif(not POSTGRES_URL, reason="joining a send needs PostgreSQL")
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "old, new, name",
    [
        ("secret_key = ", f'secret_key = "{OTHER_SECRET}"\n# was = ', "secrets.toml"),
        ('from_address = "dana@news.example.com"', 'from_address = "d@x.example.com"', ""),
    ],
)
def test_a_worker_with_other_settings_refuses_to_join_and_sends_nothing(
    cli, folder, smtp, backend, tmp_path, old, new, name
):
    use_smtp(folder, smtp.port)
    for who in ["ana", "bo", "cy"]:
        assert cli("subscribers", "add", f"{who}@example.com").exit_code == 0
    config = settings(folder)
    log = sending.delivery_log(config)
    log.start(sending.new_send(sending.plan(config, folder / ISSUE)))  # as `send` starts it
    other = tmp_path / "other-host"
    shutil.copytree(folder, other)  # the same database (its URL is in newsletter.toml)
    change(other, old, new, name or "newsletter.toml")

    worker = start_worker(other, "--once")
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert f"sends: not joined: {DIFFER}\n" in out
    assert smtp.handler.received == []
    with db.session(log.engine) as s:
        assert {d.worker for d in s.scalars(select(Delivery))} == {None}

    worker = start_worker(folder, "--once")  # this host's settings: it joins
    out, err = worker.communicate(timeout=60)
    assert f"{SLUG}: helped to send" in out, out + err
    assert len(smtp.handler.received) == 3
