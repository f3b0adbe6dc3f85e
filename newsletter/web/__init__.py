"""`newsletter serve`: the public pages. Signup with double opt-in, one-click
unsubscribe (RFC 8058), the archive and its feed. No admin UI, no sessions,
no cookies, no scripts.

Rules that hold on every path: the answer to a signup is the same page, byte
for byte and in the same time, whoever the address belongs to; a visitor never
sees a stack trace; every field is length-bounded and free of control characters.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import Engine

from newsletter.config import Config
from newsletter.storage import db
from newsletter.web import archive, confirm, errors, health, signup, unsubscribe
from newsletter.web.deps import WebContext
from newsletter.web.middleware import LimitBody


@asynccontextmanager
async def _lifespan(app: FastAPI):
    # Mail enqueued while the server was down or unreachable goes out now; mail still
    # unsent when it stops stays in the outbox for the next start (or a worker).
    courier = app.state.web.courier
    courier.start()
    try:
        yield
    finally:
        await asyncio.to_thread(courier.stop)


def create_app(settings: Config, *, engine: Engine | None = None) -> FastAPI:
    app = FastAPI(
        docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False, lifespan=_lifespan
    )
    app.state.web = WebContext.build(settings, engine or db.connect(settings))
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[o.rstrip("/") for o in settings.web.cors_origins],
        allow_methods=["POST"],
        allow_headers=["Content-Type"],
    )
    errors.install(app)
    for area in (signup, confirm, unsubscribe, archive, health):
        app.include_router(area.router)
    app.add_middleware(LimitBody, limit=settings.web.max_body_bytes)
    return app


__all__ = ["create_app"]
