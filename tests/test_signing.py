"""Signing a factory's messages fast (newsletter.mail.signing): the body canonicalized
piece by piece must hash exactly as the whole body does, for the factory's own
messages (checked by dkimpy, the independent verifier) and for any pieces at all
(the slow way takes over where a seam is not safe); RSA signatures made on the
signing threads reach the awaiting task, errors included."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random

import pytest
from test_dkim import KINDS, configure, make_key, reference_body, tags

from newsletter.compose import render
from newsletter.compose.issue import load_issue
from newsletter.config import load_config
from newsletter.mail.dkim import DkimKey, load_key, split_message
from newsletter.mail.message import MessageFactory, Recipient
from newsletter.mail.signing import CutSigner, Signers
from newsletter.tokens import Signer, secret_of

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
# Names whose whitespace relaxed canonicalization rewrites, inside the body's slots.
NAMES = ["Ana", "Ana  Lima", "Bo\tTran", "Zoë Ørsted-Nuñez " * 4, " Cy ", ""]


@pytest.fixture(scope="module")
def keys():
    return {kind: make_key(kind) for kind in KINDS}


def factory_for(folder, pem: bytes) -> MessageFactory:
    configure(folder, pem)
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


def test_signed_on_the_threads_is_signed_alike(folder, keys):
    factory = factory_for(folder, keys["rsa"].pem)
    recipient = Recipient(7, "ana@example.com", "Ana  Lima")

    async def both() -> list[tuple[bytes, str]]:
        return await asyncio.gather(*(factory.build_async(recipient) for _ in range(20)))

    for message, message_id in asyncio.run(both()):
        assert message_id == factory.message_id(recipient)
        assert keys["rsa"].verifies(message)


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


def load_pem(pem: bytes, tmp_path) -> object:
    from newsletter.mail.dkim import private_key

    return private_key(pem, tmp_path / "key.pem")


def test_a_signature_that_fails_on_a_thread_fails_its_own_task_only(folder, keys):
    configure(folder, keys["rsa"].pem)
    key = load_key(load_config(folder / "newsletter.toml", environ={}))
    signers = Signers(key, threads=1)
    digest = hashlib.sha256(b"headers").digest()

    async def three() -> list:
        waiting = asyncio.ensure_future(signers.sign(digest))
        await asyncio.sleep(0)
        waiting.cancel()  # a task that is cancelled while its signature is made
        return await asyncio.gather(
            signers.sign(b"not a SHA-256 digest"), signers.sign(digest), return_exceptions=True
        )

    wrong, right = asyncio.run(three())
    assert isinstance(wrong, ValueError)
    assert right == key.signature(digest)
    # The thread lives on for the next send's loop.
    assert asyncio.run(signers.sign(digest)) == key.signature(digest)
