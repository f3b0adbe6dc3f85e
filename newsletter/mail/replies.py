"""The server's side of an SMTP connection: its bytes cut into whole replies
as they arrive, by an asyncio Protocol.

A Protocol rather than a StreamReader: the replies are parsed in the event
loop's own read callback, and the task waiting for them wakes once, when all
it asked for are there (three, for a pipelined envelope), instead of once per
read, per reply and per drain. The sender is CPU-bound on one core, so its
CPU per message is its throughput.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

MAX_REPLY = 65536  # bytes of a reply still without its last line: not a sane server


class TransportError(Exception):
    """The connection failed, dropped, or the server said 421 (closing)."""


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"[:500]

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def transient(self) -> bool:
        # 552 (mailbox full / storage exceeded) is treated as temporary, as RFC 5321 suggests.
        return 400 <= self.code < 500 or self.code == 552


class ReplyReader(asyncio.Protocol):
    """The connection's protocol: cuts the server's bytes into replies as they
    arrive, and wakes the one task waiting once it has the replies it wants."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()  # received, not yet a whole reply
        self.replies: deque[Reply] = deque()
        self.closing = False  # a 421 is among the replies: no others will follow it
        self.error: BaseException | None = None  # why nothing more will arrive
        self.closed = loop.create_future()
        self._wanted = 0
        self._waiter: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        try:
            while (end := reply_end(buffer)) is not None:
                reply = parse_reply(bytes(buffer[:end]))
                del buffer[:end]
                self.replies.append(reply)
                self.closing = self.closing or reply.code == 421
            if len(buffer) > MAX_REPLY:
                raise TransportError("the server sent a reply line over 64 KB")
        except TransportError as exc:
            self._fail(exc)
            self.transport.abort()
            return
        if len(self.replies) >= self._wanted or self.closing:
            self._wake()

    def eof_received(self) -> bool:
        return False  # the transport closes itself: a half-open SMTP session is of no use

    def connection_lost(self, exc: BaseException | None) -> None:
        self._fail(exc or TransportError("connection closed by the server"))
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self, count: int, timeout: float) -> list[Reply]:
        """The next `count` replies; fewer when the server said 421 among them.
        Raises what ended the connection, or TimeoutError."""
        if len(self.replies) < count and not self.closing:
            if self.error is not None:
                raise self.error
            self._wanted = count
            self._waiter = waiter = self.loop.create_future()
            timer = self.loop.call_later(timeout, _time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if len(self.replies) < count and not self.closing:
                raise self.error or TimeoutError()
        replies = self.replies
        return [replies.popleft() for _ in range(min(count, len(replies)))]


def _time_out(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def reply_end(buffer: bytearray) -> int | None:
    """Where the first whole reply in `buffer` ends: after its last line, the one
    whose fourth character is not "-" (RFC 5321 4.2.1); None when it is incomplete."""
    start = 0
    while (newline := buffer.find(b"\n", start)) != -1:
        if newline - start < 4 or buffer[start + 3] != 0x2D:  # "-"
            return newline + 1
        start = newline + 1
    return None


def parse_reply(raw: bytes) -> Reply:
    """One whole reply (all its lines, as cut by `reply_end`)."""
    if raw[:3].isdigit() and raw.find(b"\n") == len(raw) - 1:  # one line: most replies
        return Reply(int(raw[:3]), raw[4:].rstrip(b"\r\n").decode("utf-8", "replace"))
    lines = raw.decode("utf-8", "replace").split("\r\n" if b"\r\n" in raw else "\n")
    lines = [line.rstrip("\r\n") for line in lines if line]
    try:
        code = int(lines[-1][:3])
    except ValueError:
        raise TransportError(f"not an SMTP reply: {lines[-1][:100]!r}") from None
    return Reply(code, "\n".join(line[4:] for line in lines))
