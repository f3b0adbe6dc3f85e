"""`newsletter sink`: a local SMTP server that keeps every message it receives
as an .eml file, for the demo and for trying a send without mailing anyone."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller

from newsletter.errors import NewsletterError


class SinkError(NewsletterError):
    """The sink cannot listen or write its outbox."""


class OutboxHandler:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.received = 0
        self._numbers = itertools.count(1)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # aiosmtpd answers commands strictly in order, so pipelined commands work.
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server, session, envelope):
        number = next(self._numbers)
        path = self.out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{number:07d}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.replace(path)  # readers never see half a message
        self.received += 1
        return f"250 OK kept as {path.name}"


def start(host: str, port: int, out_dir: Path) -> tuple[Controller, OutboxHandler]:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkError(f"{out_dir}: cannot create the outbox ({exc.strerror})") from None
    handler = OutboxHandler(out_dir)
    controller = Controller(
        handler, hostname=host, port=port, data_size_limit=10 * 1024 * 1024, ready_timeout=5
    )
    try:
        controller.start()
    except (OSError, RuntimeError) as exc:
        raise SinkError(
            f"cannot listen on {host}:{port} ({exc}); is another sink running? try --port"
        ) from None
    return controller, handler


def serve(host: str, port: int, out_dir: Path) -> int:
    """Run the sink until Ctrl-C or SIGTERM; returns how many messages it kept."""
    controller, handler = start(host, port, out_dir)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
    return handler.received
