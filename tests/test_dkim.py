"""DKIM signing (newsletter.mail.dkim), checked by an independent verifier (dkimpy)
against keys made by the openssl command: issue mail sent through a real SMTP
server on loopback, transactional mail, tampering, relaxed canonicalization, and
the one-sentence errors for key files that cannot be used."""

from __future__ import annotations

import base64
import random
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dkim
import pytest
from conftest import use_smtp

from newsletter.config import load_config
from newsletter.mail.dkim import OVERSIGNED, DkimKeyError, load_key, relaxed_body, relaxed_header
from newsletter.service.notify import build_email

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
KINDS = ["rsa", "ed25519"]


def openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


@dataclass(frozen=True)
class Key:
    kind: str
    pem: bytes
    record: bytes  # the DNS TXT record that publishes the public half

    def verifies(self, message: bytes) -> bool:
        asked = []

        def dns(name: bytes, timeout: int = 5) -> bytes:
            asked.append(name)
            return self.record

        ok = dkim.verify(message, dnsfunc=dns)
        assert asked == [b"nl._domainkey.news.example.com."]
        return ok


def make_key(kind: str) -> Key:
    if kind == "ed25519":
        pem = openssl("genpkey", "-algorithm", "ed25519")
        raw = openssl("pkey", "-pubout", "-outform", "DER", data=pem)[-32:]  # RFC 8463: raw key
        return Key(kind, pem, b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw))
    if kind == "rsa-traditional":  # "BEGIN RSA PRIVATE KEY", as older tools write
        pem = openssl("genrsa", "-traditional", "2048")
    else:  # PKCS#8, "BEGIN PRIVATE KEY"
        pem = openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
    der = openssl("pkey", "-pubout", "-outform", "DER", data=pem)
    return Key(kind, pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der))


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {kind: make_key(kind) for kind in [*KINDS, "rsa-traditional"]}


def configure(folder: Path, pem: bytes, name: str = "dkim.pem") -> None:
    (folder / name).write_bytes(pem)
    toml = folder / "newsletter.toml"
    toml.write_text(
        toml.read_text()
        + f'\n[dkim]\nselector = "nl"\ndomain = "news.example.com"\nkey_file = "{name}"\n'
    )


def tags(message: bytes) -> dict[str, str]:
    header = message.split(b"\r\n\r\n", 1)[0].decode()
    folded = re.match(r"DKIM-Signature:((?:[^\r]*\r\n[ \t])*[^\r]*)", header).group(1)
    value = re.sub(r"\s+", "", folded)
    return dict(t.split("=", 1) for t in value.strip(";").split(";"))


def header_names(message: bytes) -> list[str]:
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    return [line.split(":", 1)[0].lower() for line in head.split("\r\n") if line[:1] not in " \t"]


@pytest.mark.parametrize("kind", KINDS)
def test_issue_mail_sent_over_smtp_verifies(cli, folder, smtp, keys, kind):
    key = keys[kind]
    configure(folder, key.pem)
    use_smtp(folder, smtp.port)
    for email, name in [("ana@example.com", "Ana"), ("zoe@example.com", "Zoë Ørsted-Nuñez " * 4)]:
        assert cli("subscribers", "add", email, "--name", name.strip()).exit_code == 0
    result = cli("send", ISSUE, "--yes")
    assert "Done: 2 sent" in result.output, result.output
    assert len(smtp.handler.received) == 2
    for received in smtp.handler.received:
        data = received.data
        assert key.verifies(data)
        found = tags(data)
        assert found["a"] == {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}[kind]
        assert found["c"] == "relaxed/relaxed" and found["d"] == "news.example.com"
        head = data.split(b"\r\n\r\n", 1)[0]
        lines = head.split(b"DKIM-Signature:", 1)[1].split(b"\r\n")
        signature_lines = [lines[0], *(line for line in lines[1:] if line[:1] == b" ")]
        assert all(len(line) <= 78 for line in signature_lines)
        # Changing what the reader sees must break it: the unsubscribe link is signed.
        assert not key.verifies(
            data.replace(b"List-Unsubscribe: <https", b"List-Unsubscribe: <http")
        )


def test_signed_headers_and_the_over_signed_ones(folder, keys):
    configure(folder, keys["rsa"].pem)
    config = load_config(folder / "newsletter.toml", environ={})
    welcome = build_email(config, "welcome", "ana@example.com", 7)
    signed = tags(welcome)["h"].split(":")
    present = header_names(welcome)
    for name in ["from", "to", "subject", "date", "message-id", "mime-version", "content-type"]:
        assert name in signed
    for name in sorted(n.decode() for n in OVERSIGNED):
        assert signed.count(name) == present.count(name) + 1 == 2, name
    assert "precedence" not in signed and "auto-submitted" not in signed
    confirm = build_email(
        config, "confirm", "ana@example.com", 7, confirm_url="https://x.example/c"
    )
    # Not on the list yet: no List-Unsubscribe, and none may be added later either.
    assert tags(confirm)["h"].split(":").count("list-unsubscribe") == 1
    assert keys["rsa"].verifies(confirm)
    cut = confirm.index(b"\r\n\r\n")
    added = confirm[:cut] + b"\r\nList-Unsubscribe: <https://evil.example/u>" + confirm[cut:]
    assert not keys["rsa"].verifies(added)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["From", "Subject", "List-Unsubscribe-Post"])
@pytest.mark.parametrize("where", ["top", "bottom"])
def test_a_header_added_after_signing_breaks_the_signature(folder, keys, kind, name, where):
    configure(folder, keys[kind].pem)
    config = load_config(folder / "newsletter.toml", environ={})
    data = build_email(config, "welcome", "ana@example.com", 7)
    assert keys[kind].verifies(data)
    extra = f"{name}: someone else <x@evil.example>".encode()
    if where == "top":
        tampered = extra + b"\r\n" + data
    else:
        cut = data.index(b"\r\n\r\n")
        tampered = data[:cut] + b"\r\n" + extra + data[cut:]
    assert not keys[kind].verifies(tampered)


@pytest.mark.parametrize("kind", [*KINDS, "rsa-traditional"])
@pytest.mark.parametrize("mail", ["confirm", "welcome"])
def test_transactional_mail_verifies(folder, keys, kind, mail):
    configure(folder, keys[kind].pem)
    config = load_config(folder / "newsletter.toml", environ={})
    data = build_email(config, mail, "ana@example.com", 7, confirm_url="https://x.example/c")
    assert keys[kind].verifies(data)
    assert not keys[kind].verifies(data.replace(b"Subject: ", b"Subject: Re: ", 1))


MESSY = (
    b"From: Ana <ana@news.example.com>\r\n"
    b"To:  bo@example.com \r\n"
    b"Subject: a  subject\r\n\t folded  over\t lines \r\n"
    b"Date: Tue, 24 Nov 2026 07:00:00 +0000\r\n"
    b"\r\n"
    b"Hello  \t world \r\n"
    b"\tindented\t\r\n"
    b"   \r\n"
    b"last line \t\r\n"
    b"\r\n\r\n\r\n"
)


@pytest.mark.parametrize("kind", KINDS)
def test_whitespace_the_relaxed_forms_ignore_still_verifies(folder, keys, kind):
    configure(folder, keys[kind].pem)
    signed = load_key(load_config(folder / "newsletter.toml", environ={})).sign(MESSY)
    assert keys[kind].verifies(signed)
    # What a relay may do to whitespace, relaxed canonicalization forgives...
    relayed = (
        signed.replace(b"Hello  \t world \r\n", b"Hello world\r\n")
        .replace(b"a  subject\r\n\t folded", b"a subject folded")
        .removesuffix(b"\r\n\r\n\r\n")
    )
    assert relayed != signed and keys[kind].verifies(relayed)
    # ...but not a changed word.
    assert not keys[kind].verifies(signed.replace(b"last line", b"last lime"))


def test_a_message_with_lf_line_ends_is_signed_as_crlf(folder, keys):
    configure(folder, keys["ed25519"].pem)
    key = load_key(load_config(folder / "newsletter.toml", environ={}))
    signed = key.sign(MESSY.replace(b"\r\n", b"\n"))
    assert b"\n" not in signed.replace(b"\r\n", b"")
    assert keys["ed25519"].verifies(signed)


def reference_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 line by line, the slow way."""
    lines = body.split(b"\r\n")
    if lines[-1] == b"":
        lines.pop()  # the body ended in CRLF: no unterminated last line
    lines = [re.sub(rb"[ \t]+", b" ", line).rstrip(b" ") for line in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def test_relaxed_body_matches_the_rfc_on_random_bodies():
    pieces = [b" ", b"  ", b"\t", b"a", b"b.", b"\r\n", b"\r\n\r\n", b" \r\n", b"=\r\n"]
    rng = random.Random(6376)  # noqa: S311 (test data, not secrets)
    for _ in range(3000):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 25)))
        assert relaxed_body(body) == reference_body(body), body


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (b"Subject: hello", b"subject:hello\r\n"),
        (b"SUBJECT \t:  a  b\t \r\n\tc  ", b"subject:a b c\r\n"),
        (b"To:\r\n bo@example.com", b"to:bo@example.com\r\n"),
        (b"X-Empty:", b"x-empty:\r\n"),
    ],
)
def test_relaxed_header(raw, canonical):
    assert relaxed_header(raw) == canonical
    name, value = raw.split(b":", 1)
    assert dkim.canonicalization.Relaxed.canonicalize_headers([(name, value)]) == [
        tuple(canonical.split(b":", 1))
    ]


def test_dknewkey_ed25519_seed_file_signs(folder, keys):
    """dkimpy's `dknewkey --ktype ed25519` writes the bare base64 seed, not PEM."""
    der = openssl("pkey", "-outform", "DER", data=keys["ed25519"].pem)
    configure(folder, base64.b64encode(der[-32:]) + b"\n")
    signed = load_key(load_config(folder / "newsletter.toml", environ={})).sign(MESSY)
    assert keys["ed25519"].verifies(signed)


def bad_keys() -> dict[str, bytes | None]:
    return {
        "missing": None,
        "garbage": b"this is not a key\n",
        "public key": openssl("pkey", "-pubout", data=make_key("ed25519").pem),
        "encrypted PKCS#8": openssl(
            "genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:secret"
        ),
        "encrypted traditional": openssl(
            "genrsa", "-traditional", "-aes256", "-passout", "pass:secret", "1024"
        ),
        "512-bit RSA": openssl("genrsa", "-traditional", "512"),
        "EC": openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"),
    }


FIXES = {
    "missing": "cannot be read (No such file or directory); point key_file at",
    "garbage": "is not a PEM private key; make one with `openssl genpkey",
    "public key": "is not a PEM private key; make one with `openssl genpkey",
    "encrypted PKCS#8": "is encrypted; write it out without a passphrase",
    "encrypted traditional": "is encrypted; write it out without a passphrase",
    "512-bit RSA": "is a 512-bit RSA key, too weak for receivers to accept; 2048 bits is expected",
    "EC": "is an EC key, not an RSA or Ed25519 one; make a 2048-bit RSA key with `openssl",
}


@pytest.mark.parametrize("case", list(FIXES))
@pytest.mark.parametrize("command", [["send", ISSUE, "--yes"], ["send", ISSUE, "--dry-run"]])
def test_an_unusable_key_is_one_sentence_before_anything_is_sent(cli, folder, smtp, case, command):
    use_smtp(folder, smtp.port)
    assert cli("subscribers", "add", "ana@example.com").exit_code == 0
    pem = bad_keys()[case]
    configure(folder, b"" if pem is None else pem)
    if pem is None:
        (folder / "dkim.pem").unlink()
    result = cli(*command)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"error: dkim.key_file: {folder / 'dkim.pem'} ")
    assert FIXES[case] in lines[0]
    assert not smtp.handler.received
    assert "Send '" not in result.output  # refused before asking, and before the send began


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        (
            'key_file = "missing.pem"\nselector = "nl"\ndomain = "news.example.com"\n',
            "dkim.key_file: ",
        ),
        (
            'selector = "nl"\ndomain = "news.example.com"\n',
            "dkim: selector and domain are set but key_file is not, so mail would go out unsigned",
        ),
        ('key_file = "dkim.pem"\nselector = "nl"\n', "dkim: key_file is set but domain is not"),
        (
            'key_file = "dkim.pem"\nselector = "bad selector!"\ndomain = "news.example.com"\n',
            "dkim.selector: 'bad selector!' is not a DNS name",
        ),
    ],
)
def test_check_and_scheduling_find_an_unusable_dkim_setup(cli, folder, keys, lines, says):
    """Not the send, nor the worker at the scheduled hour: the editor, now."""
    (folder / "dkim.pem").write_bytes(keys["ed25519"].pem)
    toml = folder / "newsletter.toml"
    toml.write_text(toml.read_text() + "\n[dkim]\n" + lines)
    checked = cli("check", ISSUE)
    assert checked.exit_code == 1
    assert re.search(r"newsletter\.toml:\d+: error: " + re.escape(says), checked.output), (
        checked.output
    )
    assert "Traceback" not in checked.output
    assert cli("subscribers", "add", "ana@example.com").exit_code == 0
    scheduled = cli("send", ISSUE, "--at", "2099-01-01 08:00")
    assert scheduled.exit_code == 1 and says in scheduled.stderr, scheduled.output
    assert "scheduled for" not in scheduled.output


def test_a_fix_for_an_unusable_key_never_overwrites_it(folder, keys):
    (folder / "dkim.pem").write_bytes(openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                                              "ec_paramgen_curve:P-256"))  # fmt: skip
    configure(folder, (folder / "dkim.pem").read_bytes())
    with pytest.raises(DkimKeyError) as raised:
        load_key(load_config(folder / "newsletter.toml", environ={}))
    assert "-out dkim-rsa.pem` and point key_file at it" in str(raised.value)
    assert "-out dkim.pem" not in str(raised.value)
