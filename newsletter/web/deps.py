"""What every router needs, built once per app and stored on `app.state.web`;
routers ask for it as a FastAPI dependency (`ctx: Context`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import Engine

from newsletter.compose import render
from newsletter.config import Config
from newsletter.links import Links
from newsletter.service import notify
from newsletter.tokens import Signer, secret_of
from newsletter.web.pages import Pages

# How long an email waits after the reply that caused it: its CPU work (building
# the MIME message) must not lengthen that reply, or the answer's timing would tell
# a new address (an email goes out) from a subscribed one (none does).
AFTER_REPLY = 0.05


@dataclass(frozen=True)
class Limits:
    per_ip: RateLimitItem
    per_address: RateLimitItem
    per_day: RateLimitItem  # confirmation emails to one address


@dataclass
class WebContext:
    config: Config
    engine: Engine
    signer: Signer
    links: Links
    pages: Pages
    limits: Limits
    limiter: MovingWindowRateLimiter = field(
        default_factory=lambda: MovingWindowRateLimiter(MemoryStorage())
    )
    outgoing: set[asyncio.Task] = field(default_factory=set)

    @classmethod
    def build(cls, config: Config, engine: Engine) -> WebContext:
        signer = Signer(secret_of(config))
        links = Links(config.newsletter.base_url, signer)
        web = config.web
        limits = Limits(
            parse(web.limit_per_ip),
            parse(web.limit_per_address),
            parse(f"{web.confirmations_per_day}/day"),
        )
        pages = Pages(render.environment(config.root), config, links)
        return cls(config, engine, signer, links, pages, limits)

    def send_later(self, kind: str, to: str, **context: str) -> None:
        """Email after the reply, detached from the request: a reply must take as long,
        and leave its connection as free, whether or not an email goes out."""
        task = asyncio.get_running_loop().create_task(self._send(kind, to, context))
        self.outgoing.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self.outgoing.discard)

    async def drain(self, timeout: float = 10.0) -> None:
        """Let the emails already promised leave before the server stops."""
        if self.outgoing:
            await asyncio.wait(set(self.outgoing), timeout=timeout)

    async def _send(self, kind: str, to: str, context: dict[str, str]) -> None:
        await asyncio.sleep(AFTER_REPLY)
        await notify.send_email(self.config, kind, to, **context)


def web_context(request: Request) -> WebContext:
    return request.app.state.web


Context = Annotated[WebContext, Depends(web_context)]
