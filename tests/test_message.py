"""Messages: headers, the fast slot-filling path against the stdlib reference, DKIM."""

from __future__ import annotations

import base64
import datetime as dt
import email
import subprocess
from email import policy

import dkim
import pytest
from conftest import FULL_ISSUE

from newsletter.compose.issue import load_issue
from newsletter.compose.render import prepare
from newsletter.config import load_config
from newsletter.mail.message import MessageError, MessageFactory, Recipient
from newsletter.tokens import Signer

SECRET = "s" * 32
DATE = dt.datetime(2026, 11, 24, 7, 0, tzinfo=dt.UTC)


@pytest.fixture
def factory(write_issue, config):
    prepared = prepare(load_issue(write_issue(FULL_ISSUE)), config)
    return MessageFactory(prepared, config, Signer(SECRET), date=DATE)


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)


RECIPIENTS = [
    Recipient(1, "ana@example.com", "Ana Souza"),
    Recipient(2, "bo@example.com", ""),
    Recipient(3, "zoe@example.com", "Zoë Ørsted-Nuñez"),
    Recipient(4, "q@example.com", 'Dr. "Quote", Esq. <x>'),
    Recipient(5, "long@example.com", "L" * 200),
    Recipient(6, "emoji@example.com", "🎉" * 200),
    Recipient(7, "idn@xn--bcher-kva.de", "Bücher Fan"),
]


@pytest.mark.parametrize("recipient", RECIPIENTS, ids=lambda r: str(r.subscriber_id))
def test_fast_path_parses_to_exactly_what_the_stdlib_builds(factory, recipient):
    fast, slow = parse(factory.build(recipient)), parse(factory.reference(recipient))
    assert sorted(fast.keys()) == sorted(slow.keys())
    for name in fast:
        if name == "Content-Type":
            continue  # the boundary is random in both
        # Folding whitespace is not content (RFC 5322 3.2.2): compare unfolded values.
        assert " ".join(str(fast[name]).split()) == " ".join(str(slow[name]).split()), name
    assert fast.get_content_type() == slow.get_content_type() == "multipart/alternative"
    fast_parts, slow_parts = list(fast.iter_parts()), list(slow.iter_parts())
    assert [p.get_content_type() for p in fast_parts] == ["text/plain", "text/html"]
    assert [p.get_content_type() for p in slow_parts] == ["text/plain", "text/html"]
    for f, s in zip(fast_parts, slow_parts, strict=True):
        assert f.get_content_charset() == s.get_content_charset() == "utf-8"
        assert f.get_content() == s.get_content()


def test_headers_one_by_one(factory, config):
    message = parse(factory.build(RECIPIENTS[0]))
    assert message["From"] == "Dana Whitfield <dana@news.example.com>"
    assert message["To"] == "Ana Souza <ana@example.com>"
    assert message["Reply-To"] == "dana@example.com"
    assert message["Subject"] == "Flip, then flop: what B2B marketers do now"
    assert message["Date"] == "Tue, 24 Nov 2026 07:00:00 +0000"
    assert message["MIME-Version"] == "1.0"
    assert message["List-Id"] == "The Pipeline Weekly <the-pipeline-weekly.news.example.com>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = [part.strip(" <>") for part in str(message["List-Unsubscribe"]).split(",")]
    assert https.startswith("https://news.example.com/unsubscribe?token=")
    assert Signer(SECRET).subscriber_of(https.split("token=", 1)[1])[0] == 1
    assert mailto == "mailto:dana@news.example.com?subject=unsubscribe"
    message_id = message["Message-ID"]
    assert message_id.startswith("<2026-11-24-b2b-flip-flop.") and message_id.endswith(
        "@news.example.com>"
    )
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    # The greeting takes the first name; the To: header keeps the full one.
    assert "Hi Ana," in html and "Hi Ana," in text and "Ana Souza" not in text
    assert https in text and https in html


def test_message_id_is_derived_from_issue_and_subscriber(factory, write_issue, config):
    again = MessageFactory(factory.prepared, config, Signer(SECRET))  # another run, later
    first = parse(factory.build(RECIPIENTS[0]))["Message-ID"]
    assert parse(again.build(RECIPIENTS[0]))["Message-ID"] == first
    assert parse(factory.build(RECIPIENTS[1]))["Message-ID"] != first


def test_no_line_over_998_octets_and_only_crlf(factory):
    for recipient in RECIPIENTS:
        data = factory.build(recipient)
        assert data.isascii()  # no SMTPUTF8 needed: names encoded, domains in punycode
        lines = data.split(b"\r\n")
        assert max(len(line) for line in lines) <= 998
        assert b"\n" not in data.replace(b"\r\n", b"")
        assert not any(line.startswith(b".") for line in lines)  # never needs dot-stuffing


def test_name_is_escaped_in_html_and_greets_in_text(factory):
    message = parse(factory.build(RECIPIENTS[3]))
    # The greeting drops the title: 'Hi "Quote",' (see fields.greeting_name)
    assert "Hi &quot;Quote&quot;," in message.get_body(("html",)).get_content()
    assert 'Hi "Quote",' in message.get_body(("plain",)).get_content()


@pytest.mark.parametrize(
    "recipient",
    [
        Recipient(9, "ana@example.com", "Ana\r\nBcc: victim@example.com"),
        Recipient(9, "ana@example.com\r\nBcc: victim@example.com", "Ana"),
        Recipient(9, "ana@example.com", "Ana\nX-Evil: 1"),
    ],
)
def test_header_injection_is_refused(factory, recipient):
    with pytest.raises(MessageError, match="contains a line break; refusing to send it"):
        factory.build(recipient)


def test_test_copy_is_marked_and_has_its_own_message_id(factory, config):
    test = MessageFactory(factory.prepared, config, Signer(SECRET), test=True)
    one, two = parse(test.build(RECIPIENTS[0])), parse(test.build(RECIPIENTS[0]))
    assert one["Subject"] == "[TEST] Flip, then flop: what B2B marketers do now"
    assert one["Message-ID"] != two["Message-ID"]


def with_dkim_key(folder) -> bytes:
    """Configure a fresh 2048-bit RSA key; returns the DNS TXT record that verifies it."""
    key = subprocess.run(["openssl", "genrsa", "2048"], capture_output=True, check=True).stdout
    public = subprocess.run(
        ["openssl", "rsa", "-pubout", "-outform", "DER"], input=key, capture_output=True, check=True
    ).stdout
    (folder / "dkim.pem").write_bytes(key)
    toml = folder / "newsletter.toml"
    toml.write_text(
        toml.read_text()
        + '\n[dkim]\nselector = "nl"\ndomain = "news.example.com"\nkey_file = "dkim.pem"\n'
    )
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def test_dkim_signature_covers_the_unsubscribe_headers_and_verifies(factory, folder, config):
    record = with_dkim_key(folder)
    toml = folder / "newsletter.toml"
    signed = MessageFactory(factory.prepared, load_config(toml, environ={}), Signer(SECRET)).build(
        RECIPIENTS[0]
    )
    header = parse(signed)["DKIM-Signature"]
    signed_headers = next(p for p in str(header).replace(" ", "").split(";") if p.startswith("h="))
    assert "list-unsubscribe:" in signed_headers.lower()
    assert "list-unsubscribe-post" in signed_headers.lower()
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)
    tampered = signed.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x"
    )
    assert not dkim.verify(tampered, dnsfunc=lambda name, timeout=5: record)


def test_dkim_half_configured_is_an_error(factory, folder):
    toml = folder / "newsletter.toml"
    toml.write_text(toml.read_text() + '\n[dkim]\nkey_file = "dkim.pem"\n')
    with pytest.raises(MessageError, match="key_file is set but selector and domain are not"):
        MessageFactory(factory.prepared, load_config(toml, environ={}), Signer(SECRET))


@pytest.mark.parametrize(
    ("raw", "wire"),
    [
        (b"a\nb\r\n", b"a\r\nb\r\n"),  # a bare LF never reaches the server (SMTP smuggling)
        (b"a\r\n.\r\n", b"a\r\n..\r\n"),  # a lone dot would end the message early
        (b".start", b"..start\r\n"),
        (b"plain\r\n", b"plain\r\n"),
    ],
)
def test_wire_format_for_data_not_built_here(raw, wire):
    from newsletter.mail.transport import wire_format

    assert wire_format(raw) == wire


def test_factory_output_is_already_wire_ready(factory):
    from newsletter.mail.transport import wire_format

    for recipient in RECIPIENTS:
        data = factory.build(recipient)
        assert wire_format(data) == data  # so the sender may skip the scan


@pytest.mark.parametrize("kind", ["confirm", "welcome"])
def test_transactional_mail_is_signed_like_an_issue(folder, kind):
    from newsletter.service.notify import build_email

    record = with_dkim_key(folder)
    config = load_config(folder / "newsletter.toml", environ={})
    url = "https://news.example.com/confirm?token=abc"
    data = build_email(config, kind, "ana@example.com", 7, confirm_url=url)
    message = parse(data)
    assert message["Auto-Submitted"] == "auto-generated"
    assert ("List-Unsubscribe" in message) == (kind == "welcome")  # not yet on the list
    assert dkim.verify(data, dnsfunc=lambda name, timeout=5: record)
    if kind == "confirm":
        text = message.get_body(("plain",)).get_content()
        assert url in text and "[[" not in text  # the slot was filled


@pytest.mark.parametrize("subscriber_id", [1, 42, 10**6, 2**40])
def test_fast_unsubscribe_token_is_the_serializers_own(subscriber_id):
    from itsdangerous import URLSafeSerializer

    signer = Signer(SECRET)
    token = signer.unsubscribe_token(subscriber_id, "ana@example.com")
    fingerprint = signer.digest("address", "ana@example.com", size=10)
    assert token == URLSafeSerializer(SECRET, salt="unsubscribe").dumps(
        [subscriber_id, fingerprint]
    )
    assert signer.subscriber_of(token) == (subscriber_id, fingerprint)
