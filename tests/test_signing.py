"""Signing a factory's messages fast (newsletter.mail.signing, .signers): the body
canonicalized piece by piece must hash exactly as the whole body does, for the
factory's own messages (checked by dkimpy, the independent verifier) and for any
pieces at all (the slow way takes over where a seam is not safe); signing
processes sign alike, one bad message fails alone, Ctrl-C does not stop them,
and a killed one leaves its messages to the send."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import random
import re
import signal
import time

import pytest
from conftest import use_smtp
from test_dkim import KINDS, configure, make_key, reference_body, tags

from newsletter.compose import render
from newsletter.compose.issue import load_issue
from newsletter.config import ConfigError, load_config
from newsletter.mail.dkim import DkimKey, split_message
from newsletter.mail.message import MessageFactory, Recipient
from newsletter.mail.signers import SigningProcesses, how_many
from newsletter.mail.signing import CutSigner
from newsletter.tokens import Signer, secret_of

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
# Names whose whitespace relaxed canonicalization rewrites, inside the body's slots.
NAMES = ["Ana", "Ana  Lima", "Bo\tTran", "Zoë Ørsted-Nuñez " * 4, " Cy ", ""]


@pytest.fixture(scope="module")
def keys():
    return {kind: make_key(kind) for kind in KINDS}


def with_processes(folder, count: int = 1) -> None:
    """[dkim] processes: by default none on a machine of two cores, like this one."""
    toml = folder / "newsletter.toml"
    toml.write_text(toml.read_text() + f"processes = {count}\n")  # in [dkim], the last table


def factory_for(folder, pem: bytes) -> MessageFactory:
    configure(folder, pem)
    with_processes(folder)
    config = load_config(folder / "newsletter.toml", environ={})
    prepared = render.prepare(load_issue(folder / ISSUE), config)
    return MessageFactory(prepared, config, Signer(secret_of(config)))


def body_hash(message: bytes) -> str:
    """bh= as the RFC computes it, line by line, from the message after the signature."""
    body = split_message(message)[1]
    return base64.b64encode(hashlib.sha256(reference_body(body)).digest()).decode()


@pytest.mark.parametrize("kind", KINDS)
def test_every_recipients_message_is_signed_piece_by_piece_and_verifies(folder, keys, kind):
    factory = factory_for(folder, keys[kind].pem)
    cut = factory.dkim
    for i, name in enumerate(NAMES):
        recipient = Recipient(i + 1, f"r{i}@example.com", name)
        parts, _ = factory.parts(recipient)
        # The quick way is the one taken for the factory's messages...
        assert cut.relaxed_body(parts) == reference_body(split_message(b"".join(parts))[1])
        # ...and what it signs is what a verifier computes.
        message = factory.build(recipient)
        assert tags(message)["bh"] == body_hash(message)
        assert keys[kind].verifies(message)


async def ready(signers: SigningProcesses, count: int = 1) -> None:
    deadline = time.monotonic() + 20
    while len(signers.pids) < count:
        assert time.monotonic() < deadline, "no signing process became ready"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("kind", KINDS)
def test_a_signing_process_signs_as_the_send_itself_would(folder, keys, kind):
    factory = factory_for(folder, keys[kind].pem)
    recipients = [Recipient(i + 1, f"r{i}@example.com", name) for i, name in enumerate(NAMES)]

    async def fields() -> list[bytes | None]:
        async with SigningProcesses.started(factory.dkim, count=2) as signers:
            await ready(signers, 2)
            return await asyncio.gather(*(signers.field(factory.parts(r)[0]) for r in recipients))

    for recipient, field in zip(recipients, asyncio.run(fields()), strict=True):
        assert field is not None and field.startswith(b"DKIM-Signature: ")
        message = b"".join([field, *factory.parts(recipient)[0]])
        assert keys[kind].verifies(message)


def test_a_message_a_process_cannot_sign_is_left_to_the_send_and_ctrl_c_leaves_it_signing(
    folder, keys, caplog
):
    factory = factory_for(folder, keys["ed25519"].pem)
    parts = factory.parts(Recipient(1, "ana@example.com", "Ana"))[0]

    async def story() -> tuple:
        async with SigningProcesses.started(factory.dkim, count=1) as signers:
            await ready(signers)
            (pid,) = signers.pids
            # A value short: not a message of this factory. The caller signs it (or fails).
            assert await signers.field(parts[:-2]) is None
            os.kill(pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
            await asyncio.sleep(0.2)
            return pid, await signers.field(parts)

    pid, field = asyncio.run(story())
    assert "could not sign a message: ValueError" in caplog.text
    assert field is not None and keys["ed25519"].verifies(b"".join([field, *parts]))
    with pytest.raises(ProcessLookupError):  # the end of the block ended it
        os.kill(pid, 0)


def test_a_stuck_process_is_let_go_and_its_message_left_to_the_send(folder, keys, monkeypatch):
    from newsletter.mail import signers as signers_module

    monkeypatch.setattr(signers_module, "ANSWER_WAIT", 0.5)
    factory = factory_for(folder, keys["ed25519"].pem)
    recipient = Recipient(1, "ana@example.com", "Ana")

    async def story() -> tuple:
        async with factory.signing():
            await ready(factory.signers)
            (pid,) = factory.signers.pids
            os.kill(pid, signal.SIGSTOP)  # alive, and answering nobody
            started = time.monotonic()
            message, _ = await factory.build_async(recipient)
            return message, time.monotonic() - started, factory.signers.pids

    message, waited, left = asyncio.run(story())
    assert keys["ed25519"].verifies(message)
    assert 0.5 <= waited < 5 and left == []


def test_a_killed_process_leaves_its_messages_to_the_send(folder, keys):
    factory = factory_for(folder, keys["rsa"].pem)
    recipient = Recipient(1, "ana@example.com", "Ana")

    async def story() -> list:
        async with factory.signing():
            await ready(factory.signers)
            for pid in factory.signers.pids:
                os.kill(pid, signal.SIGKILL)
            # In flight as it dies, and after: each message is signed all the same.
            return await asyncio.gather(*(factory.build_async(recipient) for _ in range(5)))

    for message, _ in asyncio.run(story()):
        assert keys["rsa"].verifies(message)


def test_a_send_signs_on_its_processes(cli, folder, smtp, keys, caplog):
    configure(folder, keys["ed25519"].pem)
    with_processes(folder)
    use_smtp(folder, smtp.port)
    (folder / "list.csv").write_text("email\n" + "".join(f"r{i}@example.com\n" for i in range(400)))
    assert cli("subscribers", "import", "list.csv").exit_code == 0
    caplog.set_level(logging.DEBUG, logger="newsletter.signing")
    result = cli("send", ISSUE, "--yes")
    assert "Done: 400 sent" in result.output, result.output
    signed = re.search(r"process\(es\) signed (\d+) message", caplog.text)
    assert signed and int(signed.group(1)) > 0, caplog.text
    for received in smtp.handler.received[::40]:
        assert keys["ed25519"].verifies(received.data)


PIECES = [b" ", b"  ", b"\t", b"a", b"=", b"\r\n", b"\r\n\r\n", b" \r\n", b"=\r\n", b"x y"]


def random_piece(rng: random.Random, most: int) -> bytes:
    return b"".join(rng.choice(PIECES) for _ in range(rng.randrange(0, most)))


def test_any_pieces_hash_as_the_whole_body_would(keys, tmp_path):
    """Random literals and values, seams with whitespace on both sides, bodies ending in
    empty lines: the piecewise way or, where it cannot hold, the whole body's."""
    key = DkimKey(b"nl", b"news.example.com", load_pem(keys["ed25519"].pem, tmp_path))
    rng = random.Random(6376)  # noqa: S311 (test data, not secrets)
    quick = 0
    for _ in range(2000):
        head = b"From: a@news.example.com\r\nSubject: s\r\n\r\n" + random_piece(rng, 6)
        literals = [head, *(random_piece(rng, 8) for _ in range(rng.randrange(0, 4)))]
        literals[-1] += rng.choice([b"--end--\r\n", b"", b"\r\n\r\n", b"x \r\n"])
        values = [rng.choice([b"=\r\n" + random_piece(rng, 5) + b"=\r\n", random_piece(rng, 5)])
                  for _ in literals[1:]]  # fmt: skip
        parts = [literals[0], *(p for pair in zip(values, literals[1:], strict=True) for p in pair)]
        cut = CutSigner(key, literals)
        quick += cut.relaxed_body(parts) is not None
        signed = cut.sign(parts)
        assert tags(signed)["bh"] == body_hash(signed), parts
    assert 200 < quick < 1800  # both ways were taken, many times each


def test_a_header_value_that_ends_the_header_early_is_signed_the_whole_way(keys, tmp_path):
    key = DkimKey(b"nl", b"news.example.com", load_pem(keys["ed25519"].pem, tmp_path))
    head = b"From: a@news.example.com\r\nList-Unsubscribe: <"
    cases = [  # (literal after the value, value, quick way?)
        (b">\r\n\r\nHello ", b"https://x/u", True),
        (b">\r\n\r\nHello ", b"https://x/u\r\n\r\nInjected", False),
        (b"\r\n\r\nHello ", b"https://x/u\r\n", False),  # the blank line spans the seam
    ]
    for after, value, quick in cases:
        literals = [head, after, b"\r\n--end--\r\n"]
        parts = [head, value, after, b"=\r\nAna=\r\n", literals[2]]
        cut = CutSigner(key, literals)
        assert (cut.relaxed_body(parts) is not None) == quick, value
        signed = cut.sign(parts)
        assert tags(signed)["bh"] == body_hash(signed), value


def load_pem(pem: bytes, tmp_path) -> object:
    from newsletter.mail.dkim import private_key

    return private_key(pem, tmp_path / "key.pem")


@pytest.mark.parametrize(
    ("kind", "cores", "expected"),
    [
        *[("rsa", 1, 1), ("rsa", 2, 1), ("rsa", 4, 3), ("rsa", 64, 8)],
        *[("ed25519", 1, 0), ("ed25519", 2, 0), ("ed25519", 4, 2), ("ed25519", 64, 8)],
    ],
)
def test_as_many_signing_processes_as_pay_unless_set(keys, tmp_path, kind, cores, expected):
    key = DkimKey(b"nl", b"news.example.com", load_pem(keys[kind].pem, tmp_path))
    assert how_many(None, key, cores) == expected
    assert how_many(3, key, cores) == 3
    assert how_many(0, key, cores) == 0


def test_a_negative_number_of_processes_is_refused_by_name(folder, keys):
    configure(folder, keys["ed25519"].pem)
    with_processes(folder, -1)
    with pytest.raises(ConfigError, match=r"newsletter\.toml:\d+: dkim\.processes"):
        load_config(folder / "newsletter.toml", environ={})
