"""An SMTP client connection, kept open and reused for many messages.

When the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in
one write and their replies are read together: two round trips a message
instead of four. That, not the CPU, is what caps smtplib's throughput.

The replies are read by an asyncio Protocol (replies.py): a message costs its
task two wake-ups, one for the envelope's replies and one for the final reply.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import socket
import ssl
from collections.abc import Awaitable

from newsletter.config import SmtpSection
from newsletter.mail.replies import Reply, ReplyReader, TransportError
from newsletter.mail.replies import reply_end as reply_end  # public here since before replies.py
from newsletter.sections import HOSTNAME

FINAL_REPLY_TIMEOUT = 600.0


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


class AuthError(TransportError):
    """The server refused our login: retrying cannot help."""


class Connection:
    def __init__(self, settings: SmtpSection, helo: str | None = None) -> None:
        self.settings = settings
        self.helo = helo or helo_name(settings)
        self.extensions: set[str] = set()
        self._transport: asyncio.Transport | None = None
        self._protocol: ReplyReader | None = None

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
                await self._connect(context if s.security == "tls" else None)
                self._expect(await self._reply(), 220)
                await self._ehlo()
                if s.security == "starttls":
                    await self._starttls(context)
                if s.username:
                    await self._login(
                        s.username, s.password.get_secret_value() if s.password else ""
                    )
        except (OSError, TimeoutError, UnicodeError) as exc:
            await self.close()
            raise TransportError(f"cannot connect to {s.host}:{s.port} ({_why(exc)})") from None
        except TransportError:
            await self.close()
            raise

    async def _connect(self, context: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        self._transport, self._protocol = await loop.create_connection(
            lambda: ReplyReader(loop), self.settings.host, self.settings.port, ssl=context
        )

    async def _starttls(self, context: ssl.SSLContext | None) -> None:
        s = self.settings
        if "STARTTLS" not in self.extensions:
            raise AuthError(f"{s.host}:{s.port} does not offer STARTTLS")
        self._expect(await self._command("STARTTLS"), 220)
        # Nothing received before the handshake may be trusted.
        self._protocol.buffer.clear()
        self._protocol.replies.clear()
        loop = asyncio.get_running_loop()
        self._transport = await loop.start_tls(
            self._transport, self._protocol, context, server_hostname=s.host
        )
        self._protocol.transport = self._transport
        await self._ehlo()

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
        except (OSError, TimeoutError) as exc:
            await self.close()
            raise TransportError(f"connection lost ({_why(exc)})") from None
        except TransportError:
            await self.close()  # a 421 or a garbled reply: this connection is done
            raise

    async def _transaction(
        self, sender: str, recipient: str, data: bytes, gate: Awaitable | None
    ) -> tuple[str, Reply]:
        refused = await self._envelope(sender, recipient)
        if refused is not None:
            return refused
        if gate is not None:
            try:
                await gate
            except BaseException:
                await self.close()  # without the final dot the server keeps nothing
                raise
        # RFC 5321 4.5.3.2.6 allows ten minutes for the reply to the final dot: giving
        # up sooner would resend a message the server may be busy accepting. No drain:
        # the reply cannot come before the last byte has gone.
        self._write_all((data, b".\r\n"))
        (final,) = await self._replies(1, max(self.settings.timeout, FINAL_REPLY_TIMEOUT))
        return "data", final

    async def _envelope(self, sender: str, recipient: str) -> tuple[str, Reply] | None:
        """MAIL, RCPT and DATA; None once the server said 354, else (stage, refusal)."""
        envelope = f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"
        if self.pipelining:
            self._write(envelope.encode())
            mail, rcpt, ready = await self._replies(3)
        else:
            mail, rcpt, ready = await self._one_by_one(envelope.split("\r\n")[:3])
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
        return None

    async def _one_by_one(self, commands: list[str]) -> list[Reply]:
        """Each command once the one before it was accepted; a refusal stands in
        for the replies to the commands never sent."""
        replies: list[Reply] = []
        for line in commands:
            reply = replies[-1] if replies and not replies[-1].ok else await self._command(line)
            replies.append(reply)
        return replies

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        protocol, self._protocol = self._protocol, None
        if transport is None:
            return
        try:
            transport.write(b"QUIT\r\n")
            transport.close()
            await asyncio.wait_for(asyncio.shield(protocol.closed), 1)
        except (OSError, TimeoutError, ssl.SSLError):
            pass

    async def _ehlo(self) -> None:
        reply = await self._command(f"EHLO {self.helo}")
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

    async def _command(self, line: str) -> Reply:
        self._write(f"{line}\r\n".encode())
        return await self._reply()

    def _write(self, data: bytes) -> None:
        if self._transport is None:
            raise TransportError("not connected")
        self._transport.write(data)

    def _write_all(self, pieces: tuple[bytes, ...]) -> None:
        if self._transport is None:
            raise TransportError("not connected")
        self._transport.writelines(pieces)  # one send (sendmsg from Python 3.12 on)

    async def _reply(self) -> Reply:
        return (await self._replies(1))[0]

    async def _replies(self, count: int, timeout: float | None = None) -> list[Reply]:
        """The next `count` whole replies. A 421 (the server is closing) among them
        ends the connection: no reply after it will come."""
        if self._protocol is None:
            raise TransportError("not connected")
        replies = await self._protocol.take(count, timeout or self.settings.timeout)
        for reply in replies:
            if reply.code == 421:
                raise TransportError(f"server closing: {reply}")
        return replies

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
