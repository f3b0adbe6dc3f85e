"""/healthz for a load balancer or monitor: 200 only when the database takes writes,
since a site that cannot record a signup or an unsubscribe is not healthy."""

from __future__ import annotations

from fastapi import APIRouter

from newsletter.storage import db
from newsletter.web.deps import Context
from newsletter.web.errors import RETRY_AFTER

router = APIRouter()


@router.api_route("/healthz", methods=["GET", "HEAD"])
def healthz(ctx: Context):
    problem = db.write_problem(ctx.engine)
    if problem is None:
        return ctx.pages.json({"status": "ok"})
    response = ctx.pages.json({"status": "error", "database": problem}, status=503)
    response.headers["Retry-After"] = RETRY_AFTER
    return response
