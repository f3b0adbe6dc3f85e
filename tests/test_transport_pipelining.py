"""The SMTP client's envelope, pipelined (RFC 2920) and not: against aiosmtpd for
what a real server keeps, and against a bare server on loopback (`wire`) for the
bytes as they arrive: what went out in one write, and what never went out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from smtp_server import SmtpServer

from newsletter.config import SmtpSection
from newsletter.mail.transport import Connection, TransportError

MESSAGE = b"Subject: hello\r\n\r\nA line of text.\r\n"
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def settings(port: int, timeout: float = 5.0) -> SmtpSection:
    return SmtpSection(host="127.0.0.1", port=port, security="none", timeout=timeout)


async def connected(port: int, timeout: float = 5.0) -> Connection:
    connection = Connection(settings(port, timeout), helo="client.example.com")
    await connection.open()
    return connection


async def send_one(port: int, recipient: str):
    """One message over a fresh connection, closed after: (stage, reply)."""
    connection = await connected(port, timeout=2)
    result = await connection.send("list@example.com", recipient, MESSAGE)
    await connection.close()
    return result


async def failure(port: int, timeout: float = 2) -> str:
    """Why sending one message fails (the TransportError's words)."""
    connection = await connected(port, timeout=timeout)
    with pytest.raises(TransportError) as caught:
        await connection.send("list@example.com", "r@example.com", MESSAGE)
    return str(caught.value)


def run_with(server: SmtpServer, client: Callable[[Connection], Awaitable]):
    async def main():
        connection = await connected(server.port)
        try:
            return await client(connection)
        finally:
            await connection.close()

    return asyncio.run(main())


async def wire(script: Script, client: Callable[[int], Awaitable], pipelining: bool = True):
    """Run `client(port)` against a bare server: it greets, answers EHLO, then
    `script` speaks for it."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 wire ESMTP\r\n")
        await reader.readline()
        writer.write(
            b"250-wire\r\n250-PIPELINING\r\n250 8BITMIME\r\n" if pipelining else b"250 wire\r\n"
        )
        try:
            await script(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    async with server:
        return await client(server.sockets[0].getsockname()[1])


async def lines(reader: asyncio.StreamReader, count: int) -> list[str]:
    return [(await reader.readline()).decode().rstrip("\r\n") for _ in range(count)]


async def nothing_more(reader: asyncio.StreamReader, wait: float = 0.1) -> bool:
    """True when the client sends nothing within `wait` (it waits for a reply)."""
    try:
        await asyncio.wait_for(reader.readline(), wait)
    except TimeoutError:
        return True
    return False


# aiosmtpd: what a real server keeps -------------------------------------------------


def test_pipelined_messages_arrive_whole_over_one_connection(smtp):
    async def client(connection):
        assert connection.pipelining
        return [
            await connection.send("list@example.com", f"r{i}@example.com", MESSAGE)
            for i in range(3)
        ]

    results = run_with(smtp, client)
    assert [stage for stage, _ in results] == ["data"] * 3
    assert all(reply.code == 250 for _, reply in results)
    assert [r.rcpt for r in smtp.handler.received] == [
        "r0@example.com",
        "r1@example.com",
        "r2@example.com",
    ]
    assert smtp.handler.received[0].data.endswith(b"A line of text.\r\n")
    assert smtp.handler.sessions == 1


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize("code", [550, 451])
def test_a_refused_recipient_keeps_the_connection_in_step(pipelining, code):
    # Pipelined, DATA went out behind the refused RCPT: its refusal must be read too,
    # or every later reply would answer the command before it.
    with SmtpServer() as server:
        server.handler.pipelining = pipelining
        server.handler.script("gone@example.com", code)

        async def client(connection):
            assert connection.pipelining is pipelining
            refused = await connection.send("list@example.com", "gone@example.com", MESSAGE)
            taken = await connection.send("list@example.com", "here@example.com", MESSAGE)
            return refused, taken

        (stage, refusal), (final_stage, final) = run_with(server, client)
        assert (stage, refusal.code) == ("rcpt", code)
        assert (final_stage, final.code) == ("data", 250)
        assert [r.rcpt for r in server.handler.received] == ["here@example.com"]
        assert server.handler.sessions == 1


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_421_for_the_recipient_ends_the_connection(pipelining):
    with SmtpServer() as server:
        server.handler.pipelining = pipelining
        server.handler.script("busy@example.com", 421)

        async def client(connection):
            with pytest.raises(TransportError, match="server closing: 421"):
                await connection.send("list@example.com", "busy@example.com", MESSAGE)
            with pytest.raises(TransportError, match="not connected"):
                await connection.send("list@example.com", "other@example.com", MESSAGE)

        run_with(server, client)
        assert server.handler.received == []


# The bare server: the bytes as they arrive -----------------------------------------


def test_the_envelope_goes_out_in_one_write_when_the_server_pipelines():
    seen: list[str] = []

    async def script(reader, writer):
        # No reply before all three commands are here: a client that waited for the
        # reply to MAIL would wait forever (and time out).
        seen.extend(await lines(reader, 3))
        writer.write(b"250 sender ok\r\n250 rcpt ok\r\n354 go ahead\r\n")
        body = await reader.readuntil(b"\r\n.\r\n")
        seen.append(body.decode())
        writer.write(b"250 kept\r\n")
        seen.extend(await lines(reader, 1))

    stage, reply = asyncio.run(wire(script, lambda port: send_one(port, "r@example.com")))
    assert (stage, str(reply)) == ("data", "250 kept")
    assert seen == [
        "MAIL FROM:<list@example.com>",
        "RCPT TO:<r@example.com>",
        "DATA",
        MESSAGE.decode() + ".\r\n",
        "QUIT",
    ]


def test_without_pipelining_each_command_waits_for_its_reply_and_a_refusal_stops_data():
    seen: list[str] = []
    early: list[str] = []

    async def answer(reader, writer, reply: bytes) -> None:
        (line,) = await lines(reader, 1)
        seen.append(line)
        if not await nothing_more(reader):
            early.append(line)  # the client sent the next command before this reply
        writer.write(reply)

    async def script(reader, writer):
        await answer(reader, writer, b"250 sender ok\r\n")
        await answer(reader, writer, b"550 5.1.1 no such user\r\n")
        await answer(reader, writer, b"250 reset\r\n")
        seen.extend(await lines(reader, 1))

    async def client(port):
        connection = await connected(port, timeout=2)
        assert not connection.pipelining
        result = await connection.send("list@example.com", "gone@example.com", MESSAGE)
        await connection.close()
        return result

    stage, reply = asyncio.run(wire(script, client, pipelining=False))
    assert (stage, reply.code) == ("rcpt", 550)
    assert seen == ["MAIL FROM:<list@example.com>", "RCPT TO:<gone@example.com>", "RSET", "QUIT"]
    assert early == []


def test_a_421_and_a_hang_up_mid_group_name_the_421():
    # The server answers MAIL, says 421 to RCPT and hangs up: DATA never gets a reply.
    async def script(reader, writer):
        await lines(reader, 3)
        writer.write(b"250 sender ok\r\n421 4.3.2 shutting down\r\n")
        await writer.drain()

    assert asyncio.run(wire(script, failure)) == "server closing: 421 4.3.2 shutting down"


def test_354_despite_a_refused_recipient_gets_an_empty_message_not_the_data():
    seen: list[str] = []

    async def script(reader, writer):
        await lines(reader, 3)
        writer.write(b"250 sender ok\r\n550 5.1.1 no such user\r\n354 go ahead anyway\r\n")
        seen.extend(await lines(reader, 1))
        writer.write(b"554 no valid recipients\r\n")
        seen.extend(await lines(reader, 1))
        writer.write(b"250 reset\r\n")
        seen.extend(await lines(reader, 1))

    stage, reply = asyncio.run(wire(script, lambda port: send_one(port, "gone@example.com")))
    assert (stage, reply.code) == ("rcpt", 550)
    assert seen == [".", "RSET", "QUIT"]


def test_the_data_waits_for_the_gate():
    arrived: list[float] = []

    async def script(reader, writer):
        await lines(reader, 3)
        writer.write(b"250 ok\r\n250 ok\r\n354 go\r\n")
        await reader.readuntil(b"\r\n.\r\n")
        arrived.append(asyncio.get_running_loop().time())
        writer.write(b"250 kept\r\n")
        await lines(reader, 1)

    async def client(port):
        loop = asyncio.get_running_loop()
        gate = loop.create_future()
        opened = loop.time()
        loop.call_later(0.3, gate.set_result, None)
        connection = await connected(port, timeout=2)
        _, reply = await connection.send("list@example.com", "r@example.com", MESSAGE, gate=gate)
        await connection.close()
        return opened, reply

    opened, reply = asyncio.run(wire(script, client))
    assert reply.code == 250
    assert arrived[0] - opened >= 0.3


def test_a_failed_gate_closes_without_the_final_dot():
    seen: list[bytes] = []

    async def script(reader, writer):
        await lines(reader, 3)
        writer.write(b"250 ok\r\n250 ok\r\n354 go\r\n")
        seen.append(await reader.read())  # until the client hangs up

    class Unrecorded(Exception):
        pass

    async def client(port):
        gate = asyncio.get_running_loop().create_future()
        gate.set_exception(Unrecorded())
        connection = await connected(port, timeout=2)
        with pytest.raises(Unrecorded):
            await connection.send("list@example.com", "r@example.com", MESSAGE, gate=gate)

    asyncio.run(wire(script, client))
    assert seen == [b"QUIT\r\n"]  # no message, no final dot: the server keeps nothing


@pytest.mark.parametrize(
    ("replies", "error"),
    [
        (b"", "connection lost (timed out)"),  # a server that goes quiet
        (b"hello there\r\n", "not an SMTP reply: 'hello there'"),
        (b"250-" + b"x" * 70000, "the server sent a reply line over 64 KB"),
    ],
)
def test_a_server_that_stops_making_sense_ends_the_connection(replies, error):
    async def script(reader, writer):
        await lines(reader, 3)
        writer.write(replies)
        await reader.read()

    assert asyncio.run(wire(script, lambda port: failure(port, timeout=0.3))) == error
