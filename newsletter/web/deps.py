"""What every router needs, built once per app and stored on `app.state.web`;
routers ask for it as a FastAPI dependency (`ctx: Context`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import Engine

from newsletter.compose import render
from newsletter.config import Config
from newsletter.links import Links
from newsletter.service.outbox import Courier
from newsletter.storage.ratelimits import RateLimitStorage
from newsletter.tokens import Signer, secret_of
from newsletter.web.pages import Pages


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
    # Delivers the outbox while the app runs (started and stopped by its lifespan).
    courier: Courier
    # Counted in the database: every `serve` on it shares the limits, and a restart
    # keeps them. A database that refuses the hit refuses the request (503).
    limiter: FixedWindowRateLimiter

    @classmethod
    def build(cls, config: Config, engine: Engine) -> WebContext:
        secret = secret_of(config)
        signer = Signer(secret)
        links = Links(config.newsletter.base_url, signer)
        web = config.web
        limits = Limits(
            parse(web.limit_per_ip),
            parse(web.limit_per_address),
            parse(f"{web.confirmations_per_day}/day"),
        )
        pages = Pages(render.environment(config.root), config, links)
        courier = Courier(config, engine, web.outbox_interval)
        limiter = FixedWindowRateLimiter(RateLimitStorage(engine, secret))
        return cls(config, engine, signer, links, pages, limits, courier, limiter)

    def mail_queued(self) -> None:
        """A request put mail in the outbox: have it delivered soon. The courier waits
        a moment first, so the reply never waits on building the mail (its timing would
        tell a new address, which gets a mail, from a subscribed one)."""
        self.courier.wake()


def web_context(request: Request) -> WebContext:
    return request.app.state.web


Context = Annotated[WebContext, Depends(web_context)]
