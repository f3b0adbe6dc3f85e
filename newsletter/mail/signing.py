"""Signing a factory's messages fast. Every recipient's body differs (their
unsubscribe link), so every message needs its own body hash; but a factory's
messages are its literal pieces with each recipient's short values between, so
`CutSigner` canonicalizes the literal pieces (~45 KB, tens of runs of spaces)
once and only the values per message. An Ed25519 signature then costs some 70 µs
a message on the event loop; an RSA one is made on `Signers` threads (OpenSSL
lets go of the GIL), so that the second core signs while the first sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Sequence
from functools import cache

from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.mail.dkim import DkimKey, finish, relaxed_body, relaxed_piece, split_message

# One thread per core beyond the event loop's: more would only queue for the cores.
SIGNING_THREADS = max(1, (os.cpu_count() or 2) - 1)
BATCH = 32
# A value beginning or ending with one of these could, with the piece beside it, make
# a run of WSP or a WSP before a line end across the seam; values the factory makes
# begin with "=" and end with LF.
_SEAM_START = b" \t\r\n"
_SEAM_END = b" \t\r"


class CutSigner:
    """Signs the messages of one factory: its literal pieces at even positions, each
    recipient's values between them. The literal part of the body (~45 KB, tens of
    runs of spaces) is canonicalized once here, not per message: §3.4.4's rewrites
    stay within a piece unless whitespace meets whitespace or a line end at a seam,
    and every body value is quoted-printable between soft breaks (`=` first, LF
    last). Anything else is signed the whole body's way."""

    def __init__(self, key: DkimKey, literals: Sequence[bytes]) -> None:
        """literals: the pieces a message is cut into; its parts are these with one
        value between each two (parts[2k] is literals[k])."""
        self.key = key
        first, split = next(
            ((k, at) for k, p in enumerate(literals) if (at := p.find(b"\r\n\r\n")) >= 0),
            (len(literals), -1),
        )
        self._at, self._head_end = 2 * first, split + 2
        body = [literals[first][split + 4 :], *literals[first + 1 :]] if split >= 0 else []
        self._body = [x for p in body for x in (b"", relaxed_piece(p))][1:]
        # The one rule that is not piecewise: trailing empty lines. A body ending in a
        # line of text (a MIME closing boundary) has none to drop.
        last = self._body[-1] if self._body else b""
        self._usable = len(last) > 2 and last.endswith(b"\r\n") and last[-3] != ord("\n")

    def sign(self, parts: Sequence[bytes]) -> bytes:
        """The signed message of these parts (the literal pieces with values between)."""
        unsigned, digest = self._unsigned(parts)
        return b"".join([finish(unsigned, self.key.signature(digest)), *parts])

    async def sign_async(self, parts: Sequence[bytes]) -> bytes:
        """`sign` for the send loop. An Ed25519 signature costs less than a hand-over
        to a thread; an RSA one (~250 µs of OpenSSL that holds no GIL) is made on the
        signing threads, so that the second core signs while this one sends."""
        if not isinstance(self.key.key, rsa.RSAPrivateKey):
            return self.sign(parts)
        unsigned, digest = self._unsigned(parts)
        signature = await _signers(self.key).sign(digest)
        return b"".join([finish(unsigned, signature), *parts])

    def _unsigned(self, parts: Sequence[bytes]) -> tuple[bytes, bytes]:
        body = self.relaxed_body(parts)
        if body is None:  # not a value the factory makes: the whole body, the slow way
            head, rest = split_message(b"".join(parts))
            return self.key.unsigned(head, hashlib.sha256(relaxed_body(rest)).digest())
        head = b"".join(parts[: self._at]) + parts[self._at][: self._head_end]
        return self.key.unsigned(head, hashlib.sha256(body).digest())

    def relaxed_body(self, parts: Sequence[bytes]) -> bytes | None:
        """The relaxed body of these parts, or None where the quick way cannot be sure."""
        if not self._usable:
            return None
        chunks = list(self._body)
        for i in range(1, len(chunks), 2):
            value = parts[self._at + i]
            if not value or value[0] in _SEAM_START or value[-1] in _SEAM_END:
                return None
            chunks[i] = relaxed_piece(value)
        return b"".join(chunks)


@cache
def _signers(key: DkimKey) -> Signers:
    return Signers(key)


class Signers:
    """Threads that make a key's signatures for the event loops of this process. A
    thread takes every digest waiting, signs them, and hands them back in one call:
    one wake-up of the loop per batch, not per message."""

    def __init__(self, key: DkimKey, threads: int = SIGNING_THREADS) -> None:
        self.key = key
        self._waiting: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(threads):
            threading.Thread(target=self._work, name=f"dkim-{i}", daemon=True).start()

    async def sign(self, digest: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.put((loop, future, digest))
        return await future

    def _work(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            done: dict[asyncio.AbstractEventLoop, list] = {}
            for loop, future, digest in batch:
                try:
                    outcome = (self.key.signature(digest), None)
                except Exception as exc:  # the awaiting task raises it
                    outcome = (None, exc)
                done.setdefault(loop, []).append((future, *outcome))
            for loop, results in done.items():
                with contextlib.suppress(RuntimeError):  # that loop closed meanwhile
                    loop.call_soon_threadsafe(_settle, results)


def _settle(results: list) -> None:
    for future, signature, exc in results:
        if future.done():  # its task was cancelled
            continue
        if exc is None:
            future.set_result(signature)
        else:
            future.set_exception(exc)
