"""A signing process (`python -m newsletter.mail.signing_child`), started by
`mail.signers` for a send: it reads the key and the factory's literal pieces once,
then each message's values, and answers each with its DKIM-Signature field. It
takes every request waiting in the pipe at once and answers them in one write:
two system calls for a run of messages, not two a message.

It ignores Ctrl-C and SIGTERM, which reach the whole process group: its parent
stops after the messages in flight, and closes the pipe when it no longer needs it.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
from collections.abc import Iterator, Sequence

REQUEST = struct.Struct("!IH")  # number, how many values; then each value's length
ANSWER = struct.Struct("!IBI")  # number, 0 signed / 1 failed, length; then the field or why
SETUP = struct.Struct("!I")  # length of the pickled (pem, selector, domain, literals)
READY = 0xFFFFFFFF  # the number of the first answer: the process takes messages now
SIGNED, FAILED = 0, 1


def request(number: int, values: Sequence[bytes]) -> bytes:
    lengths = struct.pack(f"!{len(values)}I", *map(len, values))
    return REQUEST.pack(number, len(values)) + lengths + b"".join(values)


def answer(number: int, failed: bool, data: bytes) -> bytes:
    return ANSWER.pack(number, FAILED if failed else SIGNED, len(data)) + data


def answers(buffer: bytearray) -> Iterator[tuple[int, bool, bytes]]:
    """Each whole answer at the start of buffer, taken out of it."""
    start = 0
    while len(buffer) - start >= ANSWER.size:
        number, status, length = ANSWER.unpack_from(buffer, start)
        end = start + ANSWER.size + length
        if len(buffer) < end:
            break
        yield number, status == FAILED, bytes(buffer[start + ANSWER.size : end])
        start = end
    del buffer[:start]


def _requests(buffer: bytearray) -> Iterator[tuple[int, list[bytes]]]:
    start = 0
    while len(buffer) - start >= REQUEST.size:
        number, count = REQUEST.unpack_from(buffer, start)
        at = start + REQUEST.size + 4 * count
        if len(buffer) < at:
            break
        lengths = struct.unpack_from(f"!{count}I", buffer, start + REQUEST.size)
        if len(buffer) < at + sum(lengths):
            break
        values = []
        for length in lengths:
            values.append(bytes(buffer[at : at + length]))
            at += length
        yield number, values
        start = at
    del buffer[:start]


def _read_setup(fd: int) -> tuple | None:
    data = b""
    while len(data) < SETUP.size or len(data) < SETUP.size + SETUP.unpack_from(data)[0]:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return None
        data += chunk
    (length,) = SETUP.unpack_from(data)
    rest = data[SETUP.size + length :]
    return (*pickle.loads(data[SETUP.size : SETUP.size + length]), rest)  # noqa: S301 (its parent's pipe)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # before the imports: a Ctrl-C may come
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # while OpenSSL's bindings load
    from pathlib import Path

    from newsletter.mail.dkim import DkimKey, private_key
    from newsletter.mail.signing import CutSigner

    source, sink = sys.stdin.fileno(), sys.stdout.fileno()
    setup = _read_setup(source)
    if setup is None:
        return
    pem, selector, domain, literals, rest = setup
    signer = CutSigner(DkimKey(selector, domain, private_key(pem, Path("[dkim] key"))), literals)
    os.write(sink, answer(READY, False, b""))
    buffer = bytearray(rest)
    while True:
        out = []
        for number, values in _requests(buffer):
            try:
                out.append(answer(number, False, signer.field(signer.parts(values))))
            except Exception as exc:  # that message fails; the send goes on
                out.append(answer(number, True, f"{exc.__class__.__name__}: {exc}".encode()))
        if out:
            _write_all(sink, b"".join(out))
        chunk = os.read(source, 1 << 20)
        if not chunk:
            return
        buffer += chunk


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    main()
