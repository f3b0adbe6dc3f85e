"""What the bounce address changes in outgoing mail: VERP envelope senders, the
unsubscribe mailto, the bulk headers; and the tokens that carry them."""

from __future__ import annotations

import datetime as dt
import email
import re
from email import policy

import pytest
from conftest import FULL_ISSUE

from newsletter.compose.emails import prepare_email
from newsletter.compose.issue import load_issue
from newsletter.compose.render import prepare
from newsletter.config import BouncesSection
from newsletter.mail import inbound
from newsletter.mail.message import MessageFactory, Recipient, feedback_id
from newsletter.tokens import Signer, TokenError

SECRET = "s" * 32
DATE = dt.datetime(2026, 11, 24, 7, 0, tzinfo=dt.UTC)
BOUNCES = "bounces@news.example.com"
ANA = Recipient(1, "ana@example.com", "Ana Souza")


@pytest.fixture
def bouncing(config):
    return config.model_copy(update={"bounces": BouncesSection(address=BOUNCES)})


@pytest.fixture
def prepared(write_issue, config):
    return prepare(load_issue(write_issue(FULL_ISSUE)), config)


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)


def unfolded(message, name: str) -> str:
    return " ".join(str(message[name]).split())


@pytest.mark.parametrize("recipient", [ANA, Recipient(2**40, "bo@example.com", "")])
def test_fast_path_equals_the_reference_with_a_bounce_address(prepared, bouncing, recipient):
    factory = MessageFactory(prepared, bouncing, Signer(SECRET), date=DATE)
    fast, slow = parse(factory.build(recipient)), parse(factory.reference(recipient))
    assert sorted(fast.keys()) == sorted(slow.keys())
    for name in ("List-Unsubscribe", "Precedence", "Feedback-ID", "Message-ID"):
        assert unfolded(fast, name) == unfolded(slow, name)
    mailto = re.search(
        r"<mailto:([^?>]+)\?subject=unsubscribe>", unfolded(fast, "List-Unsubscribe")
    )
    assert mailto and mailto[1].startswith("bounces+unsubscribe-")


def test_issues_carry_bulk_headers_and_confirmations_do_not(prepared, config):
    issue = parse(MessageFactory(prepared, config, Signer(SECRET)).build(ANA))
    assert issue["Precedence"] == "bulk"
    assert issue["Feedback-ID"] == "2026-11-24-b2b-flip-flop:newsletter:the-pipeline-we"
    assert "Auto-Submitted" not in issue
    for kind in ("confirm", "welcome"):
        factory = MessageFactory(prepare_email(config, kind), config, Signer(SECRET), kind=kind)
        message = parse(factory.build(Recipient(7, "ana@example.com", "", {"confirm_url": "x"})))
        assert "Precedence" not in message and "Feedback-ID" not in message
        assert message["Auto-Submitted"] == "auto-generated"


def test_feedback_id_follows_gmails_form(config):
    fields = feedback_id(config, "2026-11-24-b2b-flip-flop").split(":")
    assert len(fields) <= 4
    assert 5 <= len(fields[-1]) <= 15  # Gmail's SenderId
    short = config.model_copy(
        update={"newsletter": config.newsletter.model_copy(update={"name": "Q"})}
    )
    assert feedback_id(short, "x").split(":")[-1] == "q-list"


def test_envelope_sender_per_kind(prepared, config, bouncing):
    signer = Signer(SECRET)
    plain = MessageFactory(prepared, config, signer)
    assert plain.envelope_sender(ANA) == "dana@news.example.com"
    issue = MessageFactory(prepared, bouncing, signer)
    verp = issue.envelope_sender(ANA)
    local, domain = verp.split("@")
    assert domain == "news.example.com" and local.startswith("bounces+") and len(local) <= 64
    assert issue.envelope_sender(Recipient(2, "bo@example.com")) != verp
    # A test copy or a confirmation is nobody's delivery: it bounces to the plain address.
    assert MessageFactory(prepared, bouncing, signer, test=True).envelope_sender(ANA) == BOUNCES
    confirm = MessageFactory(prepare_email(bouncing, "confirm"), bouncing, signer, kind="confirm")
    assert confirm.envelope_sender(ANA) == BOUNCES


def test_verp_token_survives_lower_and_upper_case_and_refuses_tampering():
    signer = Signer(SECRET)
    tag = signer.issue_tag("2026-11-24-b2b-flip-flop")
    token = signer.bounce_token(123, tag)
    assert re.fullmatch(r"[0-9a-f-]+", token)
    assert signer.bounce_of(token) == signer.bounce_of(token.upper()) == (123, tag)
    for bad in (token.replace("123-", "124-"), token[:-1], "x" + token, ""):
        with pytest.raises(TokenError):
            signer.bounce_of(bad)
    with pytest.raises(TokenError):
        Signer("t" * 32).bounce_of(token)


def test_mailto_token_is_bound_to_the_address():
    signer = Signer(SECRET)
    subscriber_id, signature = signer.mailto_of(signer.mailto_token(9, "ana@example.com"))
    assert subscriber_id == 9
    assert signer.mailto_matches(9, signature, "ana@example.com")
    # An id handed out again after an erasure does not inherit the old token.
    assert not signer.mailto_matches(9, signature, "someone.new@example.com")


def test_a_bounce_that_crashes_nothing_in_odd_shapes():
    for data in (
        b"\x00\x01\x02",
        b"From: x@example.com\r\nContent-Type: multipart/report\r\n\r\nno boundary",
        b"Subject: hi\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n",
    ):
        found = inbound.read(data, BOUNCES)
        assert found.kind in ("junk", "message", "bounce")
