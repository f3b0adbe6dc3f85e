"""`newsletter serve`: the public pages. Signup with double opt-in, one-click
unsubscribe (RFC 8058), the archive and its feed. No admin UI, no sessions,
no cookies, no scripts.

Rules that hold on every path: the answer to a signup is the same page, byte
for byte, whoever the address belongs to; a visitor never sees a stack trace;
every field is length-bounded and free of control characters.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from xml.etree import ElementTree as ET

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import Engine, text
from starlette.exceptions import HTTPException

from newsletter.compose import render
from newsletter.config import Config
from newsletter.fields import CONTROL
from newsletter.service import signup
from newsletter.service.notify import send_email
from newsletter.service.sending import stored_prepared
from newsletter.storage import db
from newsletter.storage.delivery_log import DeliveryLog
from newsletter.storage.models import SendState
from newsletter.storage.subscribers import SubscriberError, normalize_email
from newsletter.tokens import Signer, TokenError, TokenExpired, secret_of

log = logging.getLogger("newsletter.web")
LIMITS = {"email": 254, "name": 100, "website": 200}
INBOX = {
    "heading": "Check your inbox",
    "message": "If that address can receive it, a confirmation email is on its way. "
    "Press the button in it to start getting the newsletter.",
}
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; "
    "form-action 'self' {base}; frame-ancestors 'none'; base-uri 'none'"
)


class BodyTooLarge(Exception):
    pass


class LimitBody:
    """ASGI middleware: refuse request bodies over `limit` bytes, declared or streamed."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.limit:
            return await _plain(send, 413, b"Request too large.")
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:
            await _plain(send, 413, b"Request too large.")


async def _plain(send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(config: Config, *, engine: Engine | None = None) -> FastAPI:
    engine = engine or db.connect(config)
    signer = Signer(secret_of(config))
    store = DeliveryLog(engine)
    env = render.environment(config.root)
    base = config.newsletter.base_url.rstrip("/")
    web = config.web
    consent = web.consent_text.replace("{name}", config.newsletter.name)
    limiter = MovingWindowRateLimiter(MemoryStorage())
    per_ip, per_address = parse(web.limit_per_ip), parse(web.limit_per_address)
    per_day = parse(f"{web.confirmations_per_day}/day")
    headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": CSP.format(base=base),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[o.rstrip("/") for o in web.cors_origins],
        allow_methods=["POST"],
        allow_headers=["Content-Type"],
    )

    def page(template: str, status: int = 200, **context) -> HTMLResponse:
        values = {"error": None, "email": "", "name": "", "show_form": False, **context}
        body = env.get_template(f"web/{template}.html.j2").render(
            newsletter=config.newsletter, base_url=base, consent=consent, **values
        )
        return HTMLResponse(body, status_code=status, headers=headers)

    def message(status: int, heading: str, text_: str, form: bool = False, **extra):
        return page("page", status, heading=heading, message=text_, show_form=form, **extra)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        log.exception("error serving %s", request.url.path)  # for the log, never the visitor
        return message(
            500,
            "Something went wrong",
            "Something went wrong on our side. Please try again in a minute.",
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if exc.status_code == 404:
            return message(404, "Not found", "There is no page here.")
        response = message(exc.status_code, "Sorry", "That request did not work.")
        response.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return message(400, "Sorry", "That request was incomplete.")

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    async def index():
        return page("index")

    @app.post("/subscribe")
    async def subscribe(request: Request):
        wants_json = request.headers.get("content-type", "").lower().startswith("application/json")
        ip = request.client.host if request.client else "unknown"
        if not limiter.hit(per_ip, "ip", ip):
            return _too_many(wants_json)
        fields = await _fields(request, wants_json)
        problem = _problem(fields)
        if fields.get("website"):
            return _inbox(wants_json)  # a bot filled the honeypot: accept, do nothing
        try:
            address = normalize_email(fields.get("email", "")) if not problem else ""
        except SubscriberError:
            problem = "That does not look like an email address; please check it."
        if problem:
            if wants_json:
                return JSONResponse({"error": problem}, status_code=400, headers=headers)
            return page(
                "index",
                400,
                error=problem,
                email=fields.get("email", "")[:254],
                name=fields.get("name", "")[:100],
            )
        if not limiter.hit(per_address, "address", address):
            return _too_many(wants_json)
        # Past the daily cap no email goes out, so the links already sent must stay valid.
        may_mail = limiter.test(per_day, "confirmation", address)
        with db.session(engine) as session:
            confirmation = signup.subscribe(
                session,
                address,
                fields.get("name"),
                ip=ip,
                consent=consent,
                form=f"{base}/ (signup form)",
                signer=signer,
                new_link=may_mail,
            )
        if confirmation:
            limiter.hit(per_day, "confirmation", address)
            url = f"{base}/confirm?token={confirmation.token}"
            _later(_mail(config, "confirm", address, confirm_url=url))
        return _inbox(wants_json)

    def _inbox(wants_json: bool):
        if wants_json:
            return JSONResponse({"status": "check-your-inbox", **INBOX}, headers=headers)
        return message(200, INBOX["heading"], INBOX["message"])

    def _too_many(wants_json: bool):
        text_ = "Too many tries from here. Please wait a while and try again."
        if wants_json:
            return JSONResponse({"error": text_}, status_code=429, headers=headers)
        return message(429, "Slow down", text_)

    token_of = signer.unsubscribe_token

    @app.get("/confirm")  # not HEAD: a link checker's HEAD must not confirm anyone
    async def confirm(token: str = ""):
        try:
            with db.session(engine) as session:
                subscriber = signup.confirm(
                    session, token[:500], signer=signer, max_age_seconds=web.confirm_days * 86400
                )
                subscriber_id, address = subscriber.id, subscriber.email
        except TokenExpired:
            return message(
                400,
                "This link has expired",
                f"Confirmation links work for {web.confirm_days} days. Sign up again below.",
                form=True,
            )
        except signup.LinkUsed:
            return message(
                400,
                "This link was already used",
                "It was used before, or a newer "
                "link replaced it. If you are not getting the newsletter, sign up "
                "again below.",
                form=True,
            )
        except TokenError:
            return message(
                400,
                "This link is not valid",
                "It may have been cut short by your email program. Sign up again below.",
                form=True,
            )
        if web.welcome_email:
            unsubscribe_url = f"{base}/unsubscribe?token={token_of(subscriber_id, address)}"
            _later(
                _mail(
                    config,
                    "welcome",
                    address,
                    archive_url=f"{base}/archive",
                    unsubscribe_url=unsubscribe_url,
                )
            )
        return message(
            200,
            "You're in!",
            f"Welcome to {config.newsletter.name}. The next "
            f"issue arrives on {config.newsletter.weekday.capitalize()}.",
        )

    def _unsubscribe_problem():
        return message(
            400,
            "This unsubscribe link is not valid",
            "Please use the unsubscribe "
            "link at the bottom of one of your emails; it works without a login.",
        )

    @app.api_route("/unsubscribe", methods=["GET", "HEAD"])
    async def unsubscribe_page(token: str = ""):
        try:
            signer.subscriber_of(token[:500])
        except TokenError:
            return _unsubscribe_problem()
        return page("unsubscribe", token=token)  # GET changes nothing: scanners prefetch links

    @app.post("/unsubscribe")
    async def unsubscribe(token: str = ""):
        # RFC 8058: one POST with List-Unsubscribe=One-Click, no cookie, no redirect.
        try:
            with db.session(engine) as session:
                signup.unsubscribe(session, token[:500], signer=signer)
        except TokenError:
            return _unsubscribe_problem()
        return message(
            200, "You're unsubscribed", "You will get no more issues. Sorry to see you go!"
        )

    @app.api_route("/archive", methods=["GET", "HEAD"], response_class=HTMLResponse)
    async def archive():
        return page("archive", issues=_published())

    @app.api_route("/archive/{slug}", methods=["GET", "HEAD"], response_class=HTMLResponse)
    async def web_version(slug: str):
        found = store.find(slug[:100])
        if found is None or found.state not in _PUBLISHED:
            return message(404, "Not found", "There is no issue here.")
        return HTMLResponse(
            render.public_fill(
                stored_prepared(found, config.newsletter.greeting_fallback), config
            ).html,
            headers=headers,
        )

    @app.api_route("/feed.xml", methods=["GET", "HEAD"])
    async def feed():
        return Response(
            _atom(config, base, _published()), media_type="application/atom+xml", headers=headers
        )

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz():
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    def _published():
        return sorted(
            (s for s in store.sends() if s.state in _PUBLISHED),
            key=lambda s: s.started_at,
            reverse=True,
        )

    app.add_middleware(LimitBody, limit=web.max_body_bytes)
    return app


_PUBLISHED = (SendState.sending, SendState.paused, SendState.done)


async def _fields(request: Request, wants_json: bool) -> dict[str, str]:
    try:
        if wants_json:
            data = await request.json()
            data = data if isinstance(data, dict) else {}
        else:
            data = dict(await request.form())
    except (ValueError, UnicodeDecodeError, RecursionError, AssertionError):
        data = {}  # malformed bodies are simply empty forms
    return {k: v if isinstance(v, str) else "" for k, v in data.items() if k in LIMITS}


def _problem(fields: dict[str, str]) -> str | None:
    for name, limit in LIMITS.items():
        value = fields.get(name, "")
        if len(value) > limit:
            return f"The {name} is too long (at most {limit} characters)."
        if name != "website" and CONTROL.search(value):
            return f"The {name} holds a line break or control character; please remove it."
    return None


_OUTGOING: set[asyncio.Task] = set()


def _later(coroutine) -> None:
    """Send after the reply, detached from the request: a reply must take as long, and
    leave its connection as free, whether or not an email goes out."""
    task = asyncio.get_running_loop().create_task(coroutine)
    _OUTGOING.add(task)
    task.add_done_callback(_OUTGOING.discard)


def _mail(config: Config, kind: str, to: str, **context):
    return send_email(config, kind, to, **context)


def _atom(config: Config, base: str, sends) -> bytes:
    ns = "http://www.w3.org/2005/Atom"
    feed = ET.Element("feed", xmlns=ns)
    ET.SubElement(feed, "title").text = config.newsletter.name
    ET.SubElement(feed, "subtitle").text = config.newsletter.tagline
    ET.SubElement(feed, "id").text = f"{base}/"
    ET.SubElement(feed, "link", href=f"{base}/feed.xml", rel="self")
    ET.SubElement(feed, "link", href=f"{base}/archive")
    updated = max((s.started_at for s in sends), default=None)
    ET.SubElement(feed, "updated").text = _rfc3339(updated or dt.datetime.now(dt.UTC))
    author = ET.SubElement(feed, "author")
    ET.SubElement(author, "name").text = config.sender.from_name
    for send in sends:
        entry = ET.SubElement(feed, "entry")
        url = f"{base}/archive/{send.slug}"
        ET.SubElement(entry, "title").text = send.subject
        ET.SubElement(entry, "id").text = url
        ET.SubElement(entry, "link", href=url)
        ET.SubElement(entry, "updated").text = _rfc3339(send.started_at)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _rfc3339(moment) -> str:
    # SQLite hands back naive UTC datetimes, PostgreSQL aware ones.
    return moment.isoformat() if moment.tzinfo else moment.isoformat() + "Z"
