"""The front page and its form: POST /subscribe answers the same page, byte for byte
and in the same time, whoever the address belongs to."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from newsletter.fields import CONTROL
from newsletter.service import signup as service
from newsletter.storage.subscribers import SubscriberError, normalize_email
from newsletter.web.deps import Context, WebContext

router = APIRouter()
LIMITS = {"email": 254, "name": 100, "website": 200}
INBOX = {
    "heading": "Check your inbox",
    "message": "If that address can receive it, a confirmation email is on its way. "
    "Press the button in it to start getting the newsletter.",
}
TOO_MANY = "Too many tries from here. Please wait a while and try again."


@router.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def index(ctx: Context):
    return ctx.pages.page("index")


@router.post("/subscribe")
async def subscribe(request: Request, ctx: Context):
    # Every database write runs in the threadpool: on the loop, a slow or locked
    # database (up to its busy timeout) would stall every other visitor's request.
    wants_json = request.headers.get("content-type", "").lower().startswith("application/json")
    ip = request.client.host if request.client else "unknown"
    if not await run_in_threadpool(ctx.limiter.hit, ctx.limits.per_ip, "ip", ip):
        return _too_many(ctx, wants_json)
    fields = await _fields(request, wants_json)
    problem = _problem(fields)
    if fields.get("website"):
        return _inbox(ctx, wants_json)  # a bot filled the honeypot: accept, do nothing
    try:
        address = normalize_email(fields.get("email", "")) if not problem else ""
    except SubscriberError:
        problem = "That does not look like an email address; please check it."
    if problem:
        if wants_json:
            return ctx.pages.json({"error": problem}, status=400)
        email, name = fields.get("email", "")[:254], fields.get("name", "")[:100]
        return ctx.pages.page("index", 400, error=problem, email=email, name=name)
    if not await run_in_threadpool(_request, ctx, address, fields.get("name"), ip):
        return _too_many(ctx, wants_json)
    return _inbox(ctx, wants_json)


def _request(ctx: WebContext, address: str, name: str | None, ip: str) -> bool:
    """The signup's database work, the same for every address; False: too many tries."""
    if not ctx.limiter.hit(ctx.limits.per_address, "address", address):
        return False
    # Past the daily cap no email goes out, so the links already sent must stay valid.
    may_mail = ctx.limiter.test(ctx.limits.per_day, "confirmation", address)
    confirmation = service.request(
        ctx.engine, address, name, ip=ip, consent=ctx.pages.consent, signer=ctx.signer,
        links=ctx.links, new_link=may_mail,
    )  # fmt: skip
    # The cap counts confirmation emails, so an address that got none (already active,
    # or capped) adds nothing; but it still writes its counter's row, in the same
    # statement: a new address must not take one transaction longer than a known one.
    ctx.limiter.hit(ctx.limits.per_day, "confirmation", address, cost=1 if confirmation else 0)
    if confirmation:
        ctx.mail_queued()
    return True


def _inbox(ctx: WebContext, wants_json: bool):
    if wants_json:
        return ctx.pages.json({"status": "check-your-inbox", **INBOX})
    return ctx.pages.message(200, INBOX["heading"], INBOX["message"])


def _too_many(ctx: WebContext, wants_json: bool):
    if wants_json:
        return ctx.pages.json({"error": TOO_MANY}, status=429)
    return ctx.pages.message(429, "Slow down", TOO_MANY)


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
