"""A real SMTP server on loopback (aiosmtpd) whose answers a test scripts:
per recipient, a sequence of replies (250, 421, 451, 452, 550, 552) or "drop"
to cut the connection; every message it accepts is kept for inspection."""

from __future__ import annotations

import email
import socket
import threading
import time
from dataclasses import dataclass, field
from email import policy

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    rcpt: str
    data: bytes
    mail_from: str = ""  # the envelope sender (MAIL FROM), not the From header

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)


@dataclass
class ScriptedHandler:
    rcpt_replies: dict[str, list] = field(default_factory=dict)
    data_replies: dict[str, list] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    transactions: int = 0
    sessions: int = 0  # EHLOs: one per connection
    rcpt_times: dict[str, list[float]] = field(default_factory=dict)
    pipelining: bool = True  # advertised in EHLO (aiosmtpd itself takes pipelined commands)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, address: str, *replies, at: str = "rcpt") -> None:
        (self.rcpt_replies if at == "rcpt" else self.data_replies)[address] = list(replies)

    def _next(self, table: dict[str, list], address: str):
        with self.lock:
            replies = table.get(address)
            if not replies:
                return 250
            return replies.pop(0) if len(replies) > 1 else replies[0]

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.lock:
            self.sessions += 1
        if not self.pipelining:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpt_times.setdefault(address, []).append(time.monotonic())
        reply = self._next(self.rcpt_replies, address)
        if reply == "drop":
            server.transport.close()
            return "421 dropped"
        if isinstance(reply, str):
            return reply  # a whole reply line, as written
        if reply != 250:
            return f"{reply} scripted reply for {address}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.transactions += 1
        rcpt = envelope.rcpt_tos[0]
        reply = self._next(self.data_replies, rcpt)
        if reply == "drop":
            server.transport.close()
            return "421 dropped"
        if reply != 250:
            return f"{reply} scripted data reply"
        with self.lock:
            self.received.append(Received(rcpt, envelope.original_content, envelope.mail_from))
        return "250 OK"

    def by_rcpt(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        for item in self.received:
            out.setdefault(item.rcpt, []).append(item)
        return out


class SmtpServer:
    def __init__(self, port: int | None = None, **options) -> None:
        self.handler = ScriptedHandler()
        self.port = port or free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **options)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
