"""Signing processes for a send. Signing costs 70 µs (Ed25519) to 330 µs
(RSA-2048) of Python and OpenSSL a message, as much as building and sending it;
on the send loop's own thread (the GIL) it slows the send where a core is free
for it, and threads would fight that thread for the GIL. So each signing process
holds the factory's literal pieces and the key, and per message gets only the
recipient's values (about 1 KB) and answers with the DKIM-Signature field
(about 0.5 KB). `how_many` says when they pay.

The processes start in the background when a send begins; until one is ready,
or if one ends, messages are signed in the send's own process: nobody waits for
them, and a send never depends on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence

from newsletter.mail.dkim import DkimKey
from newsletter.mail.signing import CutSigner
from newsletter.mail.signing_child import READY, SETUP, answers, request

STOP_WAIT = 5.0  # seconds a process may take to finish after its pipe closes
ANSWER_WAIT = 10.0  # seconds a signature may take before the send signs it itself
log = logging.getLogger("newsletter.signing")


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def how_many(configured: int | None, key: DkimKey, cores: int | None = None) -> int:
    """`[dkim] processes`, or as many as pay: an RSA signature (~250 µs of OpenSSL)
    is worth a process on any machine; an Ed25519 one (~20 µs) costs less than
    the hand-over unless a core is free beside the send loop's and the relay's or
    database's, which usually share the machine (measured on two cores: 0.72x
    unsigned signed in the send's process, 0.55x with a signing process)."""
    if configured is not None:
        return configured
    rsa = key.algorithm == b"rsa-sha256"
    spare = (cores or usable_cores()) - (1 if rsa else 2)
    return max(int(rsa), min(8, spare))


class _Gone(Exception):
    """The process ended with this message unanswered."""


class _Process(asyncio.SubprocessProtocol):
    """One signing process: requests are written once per turn of the event loop,
    answers read as they come."""

    def __init__(self, owner: SigningProcesses) -> None:
        self.owner = owner
        self.ready = False
        self.stopping = False  # its parent closed its pipe
        self.waiting: dict[int, asyncio.Future] = {}
        self.transport: asyncio.SubprocessTransport | None = None
        self.ended = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._outgoing: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, data: bytes) -> None:
        if not self._outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outgoing.append(data)

    def _flush(self) -> None:
        data, self._outgoing = b"".join(self._outgoing), []
        pipe = self.transport.get_pipe_transport(0) if self.transport else None
        if pipe is not None and not pipe.is_closing():
            pipe.write(data)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self._buffer += data
        for number, failed, text in answers(self._buffer):
            if number == READY:
                self.ready = True
            else:
                self.owner.answered(self, number, failed, text)

    def process_exited(self) -> None:
        if not self.ready and not self.stopping:
            code = self.transport.get_returncode() if self.transport else None
            log.warning(
                "a signing process ended before it signed anything (exit code %s); "
                "the send signs its messages itself", code,
            )  # fmt: skip
        self.ready = False
        left = [f for f in self.waiting.values() if not f.done()]
        for waiting in left:
            waiting.set_exception(_Gone())
        if left:
            log.warning(
                "a signing process ended with %d message(s) unanswered; they are "
                "signed by the send itself", len(left),
            )  # fmt: skip
        if not self.ended.done():
            self.ended.set_result(None)


class SigningProcesses:
    def __init__(self, signer: CutSigner) -> None:
        self.signer = signer
        self._processes: list[_Process] = []
        self._numbers = itertools.count()
        self.signed = 0  # messages the processes signed

    @classmethod
    @contextlib.asynccontextmanager
    async def started(cls, signer: CutSigner, count: int) -> AsyncIterator[SigningProcesses]:
        """Processes starting (in the background) until the block ends."""
        self = cls(signer)
        starting = asyncio.create_task(self._start(count))
        try:
            yield self
        finally:
            starting.cancel()
            await self._stop()

    @property
    def pids(self) -> list[int]:
        """The processes ready to sign."""
        return [p.transport.get_pid() for p in self._processes if p.ready]

    async def field(self, parts: Sequence[bytes]) -> bytes | None:
        """The DKIM-Signature field of these parts, from the least busy ready process;
        None when none is ready (the caller signs it)."""
        ready = [p for p in self._processes if p.ready]
        if not ready:
            return None
        process = min(ready, key=lambda p: len(p.waiting))
        number = next(self._numbers) % READY
        answer = asyncio.get_running_loop().create_future()
        process.waiting[number] = answer
        process.send(request(number, parts[1::2]))
        try:
            return await asyncio.wait_for(answer, ANSWER_WAIT)
        except TimeoutError:  # alive but stuck (stopped, swapping): it is let go
            log.warning("a signing process did not answer in %.0f s; stopping it", ANSWER_WAIT)
            process.ready = False
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                process.transport.kill()
            return None
        except _Gone:
            return None

    def answered(self, process: _Process, number: int, failed: bool, text: bytes) -> None:
        answer = process.waiting.pop(number, None)
        if answer is None or answer.done():  # its task was cancelled
            return
        if failed:  # the send's own process tries it: a failure there is the message's
            log.warning("a signing process could not sign a message: %s", text.decode())
            answer.set_result(None)
        else:
            self.signed += 1
            answer.set_result(text)

    async def _start(self, count: int) -> None:
        key = self.signer.key
        setup = pickle.dumps((key.pem(), key.selector, key.domain, self.signer.literals))
        loop = asyncio.get_running_loop()
        for _ in range(count):
            process = _Process(self)
            try:
                await loop.subprocess_exec(
                    lambda process=process: process,
                    sys.executable, "-m", "newsletter.mail.signing_child",
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            except OSError as exc:
                log.warning("no signing process (%s): the send signs its messages itself", exc)
                return
            process.transport.get_pipe_transport(0).write(SETUP.pack(len(setup)) + setup)
            self._processes.append(process)

    async def _stop(self) -> None:
        log.debug("%d process(es) signed %d message(s)", len(self._processes), self.signed)
        for process in self._processes:
            process.stopping = True
            pipe = process.transport.get_pipe_transport(0)
            if pipe is not None:
                pipe.close()  # the end of its pipe: it exits
        for process in self._processes:
            try:
                await asyncio.wait_for(asyncio.shield(process.ended), STOP_WAIT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.transport.kill()
                await process.ended
            process.transport.close()
