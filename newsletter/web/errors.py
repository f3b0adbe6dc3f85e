"""What a visitor sees when something fails: a page of ours, never a stack trace;
and a 503 with Retry-After, not a 500, when the database refuses writes."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from newsletter.web.deps import WebContext

log = logging.getLogger("newsletter.web")
RETRY_AFTER = "300"
# What SQLite and PostgreSQL say when the database cannot take a write just now:
# a read-only file or mount, a read-only replica, a file that cannot be opened, a
# lock held past the busy timeout. Local to the web until storage names these itself.
REFUSALS = ("readonly", "read-only", "unable to open", "locked")
UNAVAILABLE = {
    "/unsubscribe": "We can't record your unsubscribe right now; please try again later.",
}
DEFAULT_UNAVAILABLE = "We can't take signups right now; please try again later."


def refuses_writes(exc: BaseException) -> bool:
    """True when a database error means "not writable now", not a bug of ours."""
    if not isinstance(exc, DBAPIError):
        return False
    return any(word in str(exc.orig or exc).lower() for word in REFUSALS)


def install(app: FastAPI) -> None:
    app.add_exception_handler(Exception, crashed)
    app.add_exception_handler(DBAPIError, database_failed)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)


def _ctx(request: Request) -> WebContext:
    return request.app.state.web


async def crashed(request: Request, exc: Exception):
    log.exception("error serving %s", request.url.path)  # for the log, never the visitor
    text = "Something went wrong on our side. Please try again in a minute."
    return _ctx(request).pages.message(500, "Something went wrong", text)


async def database_failed(request: Request, exc: DBAPIError):
    if not refuses_writes(exc):
        return await crashed(request, exc)
    log.warning("database refused %s: %s", request.url.path, str(exc.orig or exc).splitlines()[0])
    text = UNAVAILABLE.get(request.url.path, DEFAULT_UNAVAILABLE)
    pages = _ctx(request).pages
    if request.headers.get("content-type", "").lower().startswith("application/json"):
        response = pages.json({"error": text}, status=503)
    else:
        response = pages.message(503, "Please try again later", text)
    response.headers["Retry-After"] = RETRY_AFTER
    return response


async def http_error(request: Request, exc: HTTPException):
    pages = _ctx(request).pages
    if exc.status_code == 404:
        return pages.message(404, "Not found", "There is no page here.")
    response = pages.message(exc.status_code, "Sorry", "That request did not work.")
    response.headers.update(exc.headers or {})  # e.g. Allow on a 405
    return response


async def invalid(request: Request, exc: RequestValidationError):
    return _ctx(request).pages.message(400, "Sorry", "That request was incomplete.")
