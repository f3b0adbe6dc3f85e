"""/healthz for a load balancer or monitor: 200 only when the database takes writes,
since a site that cannot record a signup or an unsubscribe is not healthy."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from newsletter.web.deps import Context
from newsletter.web.errors import RETRY_AFTER, refusal

router = APIRouter()


@router.api_route("/healthz", methods=["GET", "HEAD"])
async def healthz(ctx: Context):
    problem = database_problem(ctx.engine)
    if problem is None:
        return ctx.pages.json({"status": "ok"})
    response = ctx.pages.json({"status": "error", "database": problem}, status=503)
    response.headers["Retry-After"] = RETRY_AFTER
    return response


def database_problem(engine: Engine) -> str | None:
    """None when a write would succeed now, else why not ("read-only", "busy", ...).
    A real write, rolled back: SQLite grants BEGIN IMMEDIATE even on a file opened
    read-only, and only refuses once a statement would change it."""
    try:
        with engine.connect() as conn:
            conn.execute(text("UPDATE subscribers SET id = id WHERE 1 = 0"))
            conn.rollback()
    except DBAPIError as exc:
        return refusal(exc) or "unavailable"
    return None
