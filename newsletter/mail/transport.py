"""An SMTP client connection, kept open and reused for many messages.

When the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in
one write and their replies are read together: two round trips a message
instead of four. That, not the CPU, is what caps smtplib's throughput.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import socket
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass

from newsletter.config import SmtpSection
from newsletter.sections import HOSTNAME

FINAL_REPLY_TIMEOUT = 600.0
MAX_REPLY = 65536  # bytes of a reply still without its last line: not a sane server


def _why(exc: BaseException) -> str:
    return str(exc) or ("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)


def wire_format(data: bytes) -> bytes:
    """CRLF line ends only (a bare LF is how SMTP smuggling starts), dot-stuffed,
    ending in CRLF."""
    if data.count(b"\n") != data.count(b"\r\n"):
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if b"\n." in data or data.startswith(b"."):
        data = data.replace(b"\n.", b"\n..")
        data = b"." + data if data.startswith(b".") else data
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def helo_name(settings: SmtpSection) -> str:
    """The name we give in EHLO: `[smtp] helo_name`, else this machine's name. Never
    the From domain: a server that checks the name against our address would see a
    host we are not."""
    return settings.helo_name or machine_name()


@functools.cache  # getfqdn may ask DNS, which can take seconds on a bad resolver
def machine_name() -> str:
    """This machine's fully qualified name, or "localhost" when it has none usable."""
    name = socket.getfqdn()
    return name if len(name) <= 253 and HOSTNAME.match(name) and "[" not in name else "localhost"


class TransportError(Exception):
    """The connection failed, dropped, or the server said 421 (closing)."""


class AuthError(TransportError):
    """The server refused our login: retrying cannot help."""


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


class Connection:
    def __init__(self, settings: SmtpSection, helo: str | None = None) -> None:
        self.settings = settings
        self.helo = helo or helo_name(settings)
        self.extensions: set[str] = set()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buffer = bytearray()  # read from the server, not yet taken as replies

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.extensions

    async def open(self) -> None:
        s = self.settings
        context = None
        if s.security != "none":
            # Certificates are always verified; a private relay's CA can be added.
            try:
                context = ssl.create_default_context(cafile=s.ca_file)
            except OSError as exc:
                raise AuthError(f"smtp.ca_file: {s.ca_file} cannot be read ({_why(exc)})") from None
        try:
            async with asyncio.timeout(s.timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    s.host, s.port, ssl=context if s.security == "tls" else None
                )
                self._expect(await self._reply(), 220)
                await self._ehlo()
                if s.security == "starttls":
                    if "STARTTLS" not in self.extensions:
                        raise AuthError(f"{s.host}:{s.port} does not offer STARTTLS")
                    self._expect(await self._command("STARTTLS"), 220)
                    self._buffer.clear()  # nothing sent before the handshake may be trusted
                    await self._writer.start_tls(context, server_hostname=s.host)
                    await self._ehlo()
                if s.username:
                    await self._login(
                        s.username, s.password.get_secret_value() if s.password else ""
                    )
        except (OSError, TimeoutError, asyncio.IncompleteReadError, UnicodeError) as exc:
            await self.close()
            raise TransportError(f"cannot connect to {s.host}:{s.port} ({_why(exc)})") from None
        except TransportError:
            await self.close()
            raise

    async def send(
        self,
        sender: str,
        recipient: str,
        data: bytes,
        *,
        wire_ready: bool = False,
        gate: Awaitable | None = None,
    ) -> tuple[str, Reply]:
        """One message. Returns (stage, reply): stage is "rcpt" when the server refused
        the recipient, "mail" or "data" otherwise. `wire_ready` data (MessageFactory's)
        is CRLF-only with no line starting with "."; anything else is made so here.

        `gate`, when given, is awaited after the server said 354 and before the data
        goes out: the caller uses it to finish recording the previous message first,
        so that at most one accepted message per connection is ever unrecorded."""
        if not wire_ready:
            data = wire_format(data)
        try:
            return await self._transaction(sender, recipient, data, gate)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            await self.close()
            raise TransportError(f"connection lost ({_why(exc)})") from None
        except TransportError:
            await self.close()  # a 421 or a garbled reply: this connection is done
            raise

    async def _transaction(
        self, sender: str, recipient: str, data: bytes, gate: Awaitable | None
    ) -> tuple[str, Reply]:
        envelope = [f"MAIL FROM:<{sender}>", f"RCPT TO:<{recipient}>", "DATA"]
        async with asyncio.timeout(self.settings.timeout):
            if self.pipelining:
                self._write("".join(f"{line}\r\n" for line in envelope).encode())
                mail, rcpt, ready = (await self._reply(), await self._reply(), await self._reply())
            else:
                mail = await self._command(envelope[0])
                rcpt = await self._command(envelope[1]) if mail.ok else mail
                ready = await self._command("DATA") if rcpt.ok else rcpt
            for reply in (mail, rcpt, ready):
                if reply.code == 421:
                    raise TransportError(f"server closing: {reply}")
            if ready.code != 354:
                await self._command("RSET")
                if not mail.ok:
                    return "mail", mail
                return ("rcpt", rcpt) if not rcpt.ok else ("data", ready)
            if not (mail.ok and rcpt.ok):  # a server that said 354 anyway: end the empty data
                self._write(b".\r\n")
                await self._reply()
                await self._command("RSET")
                return ("mail", mail) if not mail.ok else ("rcpt", rcpt)
        if gate is not None:
            try:
                await gate
            except BaseException:
                await self.close()  # without the final dot the server keeps nothing
                raise
        # RFC 5321 4.5.3.2.6 allows ten minutes for the reply to the final dot: giving
        # up sooner would resend a message the server may be busy accepting.
        async with asyncio.timeout(max(self.settings.timeout, FINAL_REPLY_TIMEOUT)):
            self._write(data + b".\r\n")
            await self._writer.drain()
            final = await self._reply()
        if final.code == 421:
            raise TransportError(f"server closing: {final}")
        return "data", final

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        self._buffer.clear()
        if writer is None:
            return
        try:
            writer.write(b"QUIT\r\n")
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 1)
        except (OSError, TimeoutError, ssl.SSLError):
            pass

    async def _ehlo(self) -> None:
        reply = await self._command(f"EHLO {self.helo}", multiline=True)
        if not reply.ok:
            raise TransportError(f"EHLO refused: {reply}")
        lines = reply.text.split("\n")[1:]
        self.extensions = {line.split()[0].upper() for line in lines if line.strip()}

    async def _login(self, username: str, password: str) -> None:
        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        reply = await self._command(f"AUTH PLAIN {token}")
        if reply.code != 235:
            # The reply, never the password, goes into the message.
            raise AuthError(f"login as {username!r} refused: {reply}")

    async def _command(self, line: str, multiline: bool = False) -> Reply:
        self._write(f"{line}\r\n".encode())
        return await self._reply(multiline)

    def _write(self, data: bytes) -> None:
        if self._writer is None:
            raise TransportError("not connected")
        self._writer.write(data)

    async def _reply(self, multiline: bool = False) -> Reply:
        """The next reply, whole (all its lines). The socket is read in chunks, not
        line by line: pipelined replies arrive together and are parsed without
        waiting on the network again."""
        if self._reader is None:
            raise TransportError("not connected")
        while (end := reply_end(self._buffer)) is None:
            if len(self._buffer) > MAX_REPLY:
                raise TransportError("the server sent a reply line over 64 KB")
            chunk = await self._reader.read(65536)
            if not chunk:
                raise TransportError("connection closed by the server")
            self._buffer += chunk
        raw = bytes(self._buffer[:end])
        del self._buffer[:end]
        lines = raw.decode("utf-8", "replace").split("\r\n" if b"\r\n" in raw else "\n")
        lines = [line.rstrip("\r\n") for line in lines if line]
        try:
            code = int(lines[-1][:3])
        except ValueError:
            raise TransportError(f"not an SMTP reply: {lines[-1][:100]!r}") from None
        return Reply(code, "\n".join(line[4:] for line in lines))

    @staticmethod
    def _expect(reply: Reply, code: int) -> None:
        if reply.code != code:
            raise TransportError(f"unexpected reply: {reply}")


async def send_one(settings: SmtpSection, helo: str, sender: str, to: str, data: bytes) -> Reply:
    """Open a connection, send one message, close: for test copies and transactional
    mail, which are too few to keep a connection open for."""
    connection = Connection(settings, helo=helo)
    await connection.open()
    try:
        _, reply = await connection.send(sender, to, data)
        return reply
    finally:
        await connection.close()


def reply_end(buffer: bytearray) -> int | None:
    """Where the first whole reply in `buffer` ends: after its last line, the one
    whose fourth character is not "-" (RFC 5321 4.2.1); None when it is incomplete."""
    start = 0
    while (newline := buffer.find(b"\n", start)) != -1:
        if newline - start < 4 or buffer[start + 3] != 0x2D:  # "-"
            return newline + 1
        start = newline + 1
    return None
