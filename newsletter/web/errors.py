"""What a visitor sees when something fails: a page of ours, never a stack trace;
and a 503 with Retry-After, not a 500, when the database refuses writes."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from newsletter.storage import db
from newsletter.web.deps import web_context

log = logging.getLogger("newsletter.web")
RETRY_AFTER = "300"
UNAVAILABLE = {
    "/unsubscribe": "We can't record your unsubscribe right now; please try again later.",
}
DEFAULT_UNAVAILABLE = "We can't take signups right now; please try again later."


def install(app: FastAPI) -> None:
    app.add_exception_handler(Exception, crashed)
    app.add_exception_handler(db.DatabaseUnavailable, database_failed)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)


async def crashed(request: Request, exc: Exception):
    log.exception("error serving %s", request.url.path)  # for the log, never the visitor
    text = "Something went wrong on our side. Please try again in a minute."
    return web_context(request).pages.message(500, "Something went wrong", text)


async def database_failed(request: Request, exc: db.DatabaseUnavailable):
    log.warning("database refused %s: %s", request.url.path, exc)
    text = UNAVAILABLE.get(request.url.path, DEFAULT_UNAVAILABLE)
    pages = web_context(request).pages
    if request.headers.get("content-type", "").lower().startswith("application/json"):
        response = pages.json({"error": text}, status=503)
    else:
        response = pages.message(503, "Please try again later", text)
    response.headers["Retry-After"] = RETRY_AFTER
    return response


async def http_error(request: Request, exc: HTTPException):
    pages = web_context(request).pages
    if exc.status_code == 404:
        return pages.message(404, "Not found", "There is no page here.")
    response = pages.message(exc.status_code, "Sorry", "That request did not work.")
    response.headers.update(exc.headers or {})  # e.g. Allow on a 405
    return response


async def invalid(request: Request, exc: RequestValidationError):
    return web_context(request).pages.message(400, "Sorry", "That request was incomplete.")
