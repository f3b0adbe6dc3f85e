"""Bounces, complaints and mailed unsubscribes, end to end: an issue goes out through
the loopback SMTP server with VERP envelope senders, and the mail that comes back,
written as Postfix, Exim, Exchange, Yahoo and Outlook send it (tests/data/bounces),
is read by `newsletter bounces ingest` and `bounces fetch`."""

from __future__ import annotations

import datetime as dt
import mailbox
import re
import string
from pathlib import Path

import pytest
from conftest import use_smtp
from sqlalchemy import select, update

from newsletter.config import load_config
from newsletter.storage import db
from newsletter.storage.models import BounceEvent, Delivery, Subscriber

DATA = Path(__file__).parent / "data" / "bounces"
ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
BOUNCES = "bounces@news.example.com"
READERS = ["r1@example.com", "r2@example.com", "r3@example.com", "r4@example.com"]
VERP = re.compile(r"bounces\+([0-9a-f-]+)@news\.example\.com")


def set_bounces(folder: Path, **values) -> None:
    settings = {"address": f'"{BOUNCES}"', **values}
    with (folder / "newsletter.toml").open("a") as toml:
        toml.write("\n[bounces]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))


@pytest.fixture
def sent(cli, folder, smtp):
    """An issue sent to four readers with a bounce address set: what each one got."""
    use_smtp(folder, smtp.port)
    set_bounces(folder)
    for address in READERS:
        assert cli("subscribers", "add", address).exit_code == 0
    result = cli("send", ISSUE, "--yes")
    assert result.exit_code == 0, result.output
    got = {}
    for rcpt, [item] in smtp.handler.by_rcpt().items():
        message = item.message
        unsubscribe = str(message["List-Unsubscribe"])
        got[rcpt] = {
            "rcpt": rcpt,
            "verp": item.mail_from,
            "message_id": str(message["Message-ID"]),
            "list_unsubscribe": " ".join(unsubscribe.split()),
            "mailto": re.search(r"mailto:([^?>]+)", unsubscribe)[1],
            "to": item.mail_from,
        }
    return got


def fill(tmp_path: Path, name: str, values: dict, **more) -> Path:
    text = string.Template((DATA / name).read_text()).substitute({**values, **more})
    path = tmp_path / name
    path.write_bytes(text.replace("\n", "\r\n").encode())
    return path


def state(folder: Path) -> dict[str, tuple[str, float]]:
    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:
        rows = s.execute(select(Subscriber.email, Subscriber.status, Subscriber.bounce_score))
        return {email: (status.value, score) for email, status, score in rows}


def ingest(cli, *paths: Path):
    result = cli("bounces", "ingest", *map(str, paths))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output.splitlines()


def test_every_message_goes_out_with_its_own_signed_verp_sender(sent):
    senders = [v["verp"] for v in sent.values()]
    assert len(set(senders)) == len(READERS)
    for values in sent.values():
        local = values["verp"].split("@")[0]
        assert VERP.fullmatch(values["verp"]) and len(local) <= 64
        assert local == local.lower()
        assert values["mailto"].startswith("bounces+unsubscribe-")


def test_without_a_bounce_address_the_envelope_sender_is_the_from_address(cli, folder, smtp):
    use_smtp(folder, smtp.port)
    cli("subscribers", "add", "r1@example.com")
    assert cli("send", ISSUE, "--yes").exit_code == 0
    [item] = smtp.handler.received
    assert item.mail_from == "dana@news.example.com"
    assert "<mailto:dana@news.example.com?subject=unsubscribe>" in item.message["List-Unsubscribe"]


def test_hard_postfix_bounce_marks_that_reader_bounced(cli, folder, sent, tmp_path):
    path = fill(tmp_path, "postfix-hard.eml", sent["r1@example.com"])
    [line] = ingest(cli, path)
    assert line == (f"{path}: hard bounce (5.1.1) for r1@example.com: bounced (score 1.0 ≥ 1.0)")
    assert state(folder) == {
        "r1@example.com": ("bounced", 1.0),
        "r2@example.com": ("active", 0.0),
        "r3@example.com": ("active", 0.0),
        "r4@example.com": ("active", 0.0),
    }
    shown = cli("subscribers", "show", "r1@example.com").output
    assert re.search(r"bounce_score\s+1.0", shown)
    assert re.search(r"bounce\s+\S+ hard 5.1.1 reported by mailer-daemon@", shown.lower())
    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:
        states = dict(s.execute(select(Delivery.email, Delivery.state)).all())
    assert states["r1@example.com"].value == "bounced"
    assert states["r2@example.com"].value == "sent"


def test_delayed_dsn_leaves_the_reader_active_and_counts_once_per_issue(
    cli, folder, sent, tmp_path
):
    path = fill(tmp_path, "postfix-delayed.eml", sent["r2@example.com"])
    [first] = ingest(cli, path)
    assert first.endswith("soft bounce (4.2.2) for r2@example.com: score 0.5 < 1.0, still active")
    [again] = ingest(cli, path)
    assert "already counted for this issue; score 0.5 < 1.0, still active" in again
    assert state(folder)["r2@example.com"] == ("active", 0.5)
    # The same delivery then fails for good: 0.5 more, not 1.0 on top of 0.5.
    [hard] = ingest(cli, fill(tmp_path, "postfix-hard.eml", sent["r2@example.com"]))
    assert hard.endswith("bounced (score 1.0 ≥ 1.0)")


def test_scores_add_up_to_a_higher_threshold_and_reset_after_quiet_days(
    cli, folder, sent, tmp_path
):
    set_bounces_threshold(folder, threshold=2.0)
    values = sent["r3@example.com"]
    [line] = ingest(cli, fill(tmp_path, "exim-hard.eml", values))
    assert line.endswith("hard bounce (5.1.1) for r3@example.com: score 1.0 < 2.0, still active")
    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:  # eight quiet days pass
        s.execute(
            update(Subscriber)
            .where(Subscriber.email == "r3@example.com")
            .values(last_bounce_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=8))
        )
    [after] = ingest(cli, fill(tmp_path, "postfix-delayed.eml", values))
    assert after.endswith("score 0.5 < 2.0, still active")


def set_bounces_threshold(folder: Path, **values) -> None:
    path = folder / "newsletter.toml"
    text = path.read_text()
    extra = "".join(f"{k} = {v}\n" for k, v in values.items())
    path.write_text(text.replace(f'address = "{BOUNCES}"\n', f'address = "{BOUNCES}"\n{extra}'))


def test_exim_plain_text_bounce_is_read(cli, folder, sent, tmp_path):
    [line] = ingest(cli, fill(tmp_path, "exim-hard.eml", sent["r3@example.com"]))
    assert line.endswith("hard bounce (5.1.1) for r3@example.com: bounced (score 1.0 ≥ 1.0)")
    assert state(folder)["r3@example.com"][0] == "bounced"


def test_exchange_bounce_without_verp_is_matched_by_the_returned_message_id(
    cli, folder, sent, tmp_path
):
    path = fill(tmp_path, "exchange-online.eml", sent["r4@example.com"], to=BOUNCES)
    [line] = ingest(cli, path)
    assert line.endswith("hard bounce (5.1.10) for r4@example.com: bounced (score 1.0 ≥ 1.0)")


def test_legacy_exchange_bounce_is_matched_by_address_in_the_issue_deliveries(
    cli, folder, sent, tmp_path
):
    [line] = ingest(cli, fill(tmp_path, "exchange-legacy.eml", sent["r2@example.com"], to=BOUNCES))
    assert line.endswith(
        "hard bounce (no status code) for r2@example.com: bounced (score 1.0 ≥ 1.0)"
    )
    stranger = {**sent["r2@example.com"], "rcpt": "stranger@example.com"}
    [line] = ingest(cli, fill(tmp_path, "exchange-legacy.eml", stranger, to=BOUNCES))
    assert line.endswith("no delivery of ours matches it: nobody changed")


def test_yahoo_complaint_unsubscribes_the_reader_at_once(cli, folder, sent, tmp_path):
    [line] = ingest(cli, fill(tmp_path, "yahoo-arf.eml", sent["r1@example.com"], to=BOUNCES))
    assert line.endswith(
        "spam complaint (abuse, from Yahoo!-Mail-Feedback/2.0) for r1@example.com: unsubscribed"
    )
    assert state(folder)["r1@example.com"] == ("unsubscribed", 0.0)
    assert "complaint abuse reported by yahoo" in cli(
        "subscribers", "show", "r1@example.com"
    ).output.lower().replace("!-mail-feedback/2.0", "")


def test_outlook_complaint_with_redacted_to_is_matched_by_message_id(cli, folder, sent, tmp_path):
    [line] = ingest(cli, fill(tmp_path, "outlook-arf.eml", sent["r2@example.com"], to=BOUNCES))
    assert line.endswith("for r2@example.com: unsubscribed")
    assert {e: s for e, (s, _) in state(folder).items() if s != "active"} == {
        "r2@example.com": "unsubscribed"
    }


def test_outlook_complaint_without_message_id_is_matched_by_the_unsubscribe_link(
    cli, folder, sent, tmp_path
):
    values = dict(sent["r3@example.com"])
    values["message_id"] = "<rewritten.by.a.gateway@example.net>"
    values["list_unsubscribe"] = values["list_unsubscribe"].split(",")[0]  # the https link only
    [line] = ingest(cli, fill(tmp_path, "outlook-arf.eml", values, to=BOUNCES))
    assert line.endswith("for r3@example.com: unsubscribed")


def test_mailed_unsubscribe_works_and_a_tampered_one_does_not(cli, folder, sent, tmp_path):
    values = sent["r4@example.com"]
    tampered = re.sub(
        r"-([0-9a-f])",
        lambda m: "-" + "0123456789abcdef"[(int(m[1], 16) + 1) % 16],
        values["mailto"],
        count=1,
    )
    [bad] = ingest(cli, fill(tmp_path, "unsubscribe.eml", values, mailto=tampered))
    assert bad.endswith("unsubscribe request by mail: its token is not ours: nobody changed")
    assert state(folder)["r4@example.com"][0] == "active"
    [line] = ingest(cli, fill(tmp_path, "unsubscribe.eml", values))
    assert line.endswith("unsubscribe request by mail for r4@example.com: unsubscribed")
    assert state(folder)["r4@example.com"][0] == "unsubscribed"


def test_forged_token_reply_auto_reply_and_junk_change_nobody(cli, folder, sent, tmp_path):
    r1 = sent["r1@example.com"]
    text = tmp_path / "notes.txt"
    text.write_text("just some notes\nnot an email at all\n")
    lines = ingest(
        cli,
        fill(tmp_path, "forged.eml", r1),
        fill(tmp_path, "reply.eml", r1),
        fill(tmp_path, "vacation.eml", r1),
        DATA / "junk.bin",
        text,
    )
    assert lines == [
        f"{tmp_path}/forged.eml: hard bounce (5.1.1): its token is not ours: nobody changed",
        f"{tmp_path}/reply.eml: not a bounce or complaint (a message from ana@example.com): "
        "nobody changed",
        f"{tmp_path}/vacation.eml: auto-reply from cy@example.com: nobody changed",
        f"{DATA}/junk.bin: not an email message: nobody changed",
        f"{text}: not an email message: nobody changed",
    ]
    assert {status for status, _ in state(folder).values()} == {"active"}


def test_standard_input_and_mbox(cli, folder, sent, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from newsletter.cli import app

    messages = [
        fill(tmp_path, "postfix-hard.eml", sent["r1@example.com"]).read_bytes(),
        fill(tmp_path, "reply.eml", sent["r2@example.com"]).read_bytes(),
    ]
    box = b"".join(
        b"From MAILER-DAEMON Tue Nov 24 08:00:12 2026\n" + m.replace(b"\r\n", b"\n") + b"\n"
        for m in messages
    )
    result = CliRunner().invoke(app, ["bounces", "ingest"], input=box)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("stdin#1: hard bounce (5.1.1) for r1@example.com: bounced")
    assert lines[1].startswith("stdin#2: not a bounce or complaint")
    one = CliRunner().invoke(app, ["bounces", "ingest"], input=messages[1])
    assert one.output.startswith("stdin: not a bounce or complaint")
    empty = CliRunner().invoke(app, ["bounces", "ingest"], input=b"")
    assert (empty.exit_code, empty.output) == (0, "stdin: an empty message: nobody changed\n")


def test_missing_file_is_one_line_error(cli, sent):
    result = cli("bounces", "ingest", "nowhere.eml")
    assert result.exit_code == 1
    assert result.output == "error: nowhere.eml: no such file; give a message file or an mbox\n"


def make_maildir(path: Path, messages: list[Path]) -> mailbox.Maildir:
    box = mailbox.Maildir(path, create=True)
    for message in messages:
        box.add(mailbox.MaildirMessage(message.read_bytes()))
    return box


def test_fetch_from_a_maildir_marks_processed_messages_read(cli, folder, sent, tmp_path):
    box = make_maildir(
        folder / "Maildir",
        [
            fill(tmp_path, "postfix-hard.eml", sent["r1@example.com"]),
            fill(tmp_path, "yahoo-arf.eml", sent["r2@example.com"], to=BOUNCES),
        ],
    )
    set_bounces_threshold(folder, maildir='"Maildir"')
    result = cli("bounces", "fetch")
    assert result.exit_code == 0, result.output
    lines = sorted(result.output.splitlines())
    assert lines[0] == "2 message(s) read."
    assert any(
        re.match(r"maildir:\S+: hard bounce \(5.1.1\) for r1@example.com: bounced", x)
        for x in lines
    )
    assert any(x.endswith("for r2@example.com: unsubscribed") for x in lines)
    assert all("S" in m.get_flags() and m.get_subdir() == "cur" for m in box)
    again = cli("bounces", "fetch")
    assert again.output == "0 message(s) read.\n"


def test_fetch_can_move_processed_messages_to_a_folder(cli, folder, sent, tmp_path):
    box = make_maildir(folder / "Maildir", [fill(tmp_path, "reply.eml", sent["r1@example.com"])])
    set_bounces_threshold(folder, maildir='"Maildir"', move_to='"Processed"')
    result = cli("bounces", "fetch")
    assert result.exit_code == 0, result.output
    assert len(box) == 0
    assert len(box.get_folder("Processed")) == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "error: bounces: no mailbox to fetch from; set maildir"),
        ({"maildir": '"nothere"'}, "error: bounces.maildir: "),
        ({"imap_host": '"127.0.0.1"'}, "error: bounces.imap_user or bounces.password: is not set"),
    ],
)
def test_fetch_without_a_usable_mailbox_says_so_in_one_line(cli, folder, settings, message):
    set_bounces(folder, **settings)
    result = cli("bounces", "fetch")
    assert result.exit_code == 1
    assert result.output.startswith(message) and len(result.output.splitlines()) == 1


def test_bounce_password_is_refused_in_newsletter_toml(cli, folder):
    set_bounces(folder, password='"hunter2"')
    result = cli("bounces", "fetch")
    assert result.exit_code == 1
    assert "bounces.password: secrets do not belong in newsletter.toml" in result.output


def test_bounce_address_must_leave_room_for_a_token(cli, folder):
    path = folder / "newsletter.toml"
    path.write_text(path.read_text() + '\n[bounces]\naddress = "bounces+x@news.example.com"\n')
    result = cli("bounces", "fetch")
    assert result.exit_code == 1
    assert "no '+'" in result.output


def test_bounce_events_are_kept_per_subscriber(cli, folder, sent, tmp_path):
    ingest(cli, fill(tmp_path, "postfix-delayed.eml", sent["r2@example.com"]))
    engine = db.connect(load_config(folder / "newsletter.toml", environ={}))
    with db.session(engine) as s:
        [event] = s.scalars(select(BounceEvent))
        assert (event.kind, event.score) == ("soft", 0.5)
        assert event.delivery_id is not None


def test_bounce_password_is_read_from_secrets_toml(folder):
    set_bounces(folder, imap_host='"127.0.0.1"', imap_user='"bounces"')
    (folder / "secrets.toml").write_text('[bounces]\npassword = "from-secrets"\n')
    settings = load_config(folder / "newsletter.toml", environ={})
    assert settings.bounces.password.get_secret_value() == "from-secrets"
    from_env = load_config(
        folder / "newsletter.toml", environ={"NEWSLETTER_BOUNCES_PASSWORD": "from-env"}
    )
    assert from_env.bounces.password.get_secret_value() == "from-env"


def test_the_worker_reads_the_bounce_mailbox(cli, folder, sent, tmp_path):
    make_maildir(folder / "Maildir", [fill(tmp_path, "postfix-hard.eml", sent["r1@example.com"])])
    set_bounces_threshold(folder, maildir='"Maildir"')
    result = cli("worker", "--once")
    assert result.exit_code == 0, result.output
    assert "hard bounce (5.1.1) for r1@example.com: bounced" in result.output
    assert state(folder)["r1@example.com"][0] == "bounced"


def test_test_copies_and_transactional_mail_bounce_to_the_bounce_mailbox(cli, folder, smtp):
    from newsletter.service.outbox import deliver_due
    from newsletter.storage.outbox import enqueue

    use_smtp(folder, smtp.port)
    set_bounces(folder)
    assert cli("send", ISSUE, "--test-to", "me@example.test").exit_code == 0
    config = load_config(folder / "newsletter.toml", environ={})
    engine = db.connect(config)
    enqueue(engine, "confirm", "new@example.com", None, {"confirm_url": "https://x.example/c"})
    assert deliver_due(config, engine) == ["confirm mail to new@example.com: sent"]
    assert [r.mail_from for r in smtp.handler.received] == [BOUNCES, BOUNCES]
