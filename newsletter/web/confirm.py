"""/confirm?token=…: the link in the confirmation email. A GET (or HEAD) shows a
button and changes nothing, because mail scanners (Safe Links, Mimecast,
Proofpoint) open every link in a mail; only the button's POST confirms.

Status codes: 200 for the button page and for a link used before (clicked again,
it says so, never an error); 400, with the signup form under it, for a link that
is damaged, expired, or made for someone erased since (its id may be reused)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from newsletter.service import signup
from newsletter.tokens import TokenError, TokenExpired
from newsletter.web.deps import Context, WebContext
from newsletter.web.pages import mask_email

router = APIRouter()
MAX_TOKEN = 500


@router.api_route("/confirm", methods=["GET", "HEAD"])
def confirm_page(ctx: Context, token: str = ""):
    try:
        pending = signup.look_up(
            ctx.engine, token[:MAX_TOKEN], signer=ctx.signer,
            max_age_seconds=ctx.config.web.confirm_days * 86400,
        )  # fmt: skip
    except TokenError as error:
        return _refused(ctx, error)
    if pending.subscribed:
        return _already(ctx)
    return ctx.pages.page("confirm", masked=mask_email(pending.email), token=token[:MAX_TOKEN])


@router.post("/confirm")
async def confirm(request: Request, ctx: Context, token: str = ""):
    token = await posted_token(request, token)
    try:
        joined = await run_in_threadpool(
            signup.confirm_link, ctx.engine, token[:MAX_TOKEN], signer=ctx.signer, links=ctx.links,
            max_age_seconds=ctx.config.web.confirm_days * 86400,
            welcome=ctx.config.web.welcome_email,
        )  # fmt: skip
    except TokenError as error:
        return _refused(ctx, error)
    if joined is None:
        return _already(ctx)
    if ctx.config.web.welcome_email:
        ctx.mail_queued()
    newsletter = ctx.config.newsletter
    return ctx.pages.message(
        200,
        "You're in!",
        f"Welcome to {newsletter.name}. The next issue arrives on "
        f"{newsletter.weekday.capitalize()}.",
    )


async def posted_token(request: Request, query: str) -> str:
    """The token a button's form posted, else the one in the URL."""
    try:
        sent = (await request.form()).get("token")
    except (ValueError, UnicodeDecodeError):
        sent = None  # a malformed body is an empty form
    return sent if isinstance(sent, str) and sent else query


def _already(ctx: WebContext):
    text = f"This link was used before: {ctx.config.newsletter.name} is already on its way to you."
    return ctx.pages.message(200, "You're already subscribed", text)


def _refused(ctx: WebContext, error: TokenError):
    pages, days = ctx.pages, ctx.config.web.confirm_days
    if isinstance(error, TokenExpired):
        text = f"Confirmation links work for {days} days. Sign up again below."
        return pages.message(400, "This link has expired", text, form=True)
    if isinstance(error, signup.LinkUsed):
        text = "You confirmed with it before, and left the list since. To come back, sign up below."
        return pages.message(200, "This link was already used", text, form=True)
    if isinstance(error, signup.LinkGone):
        text = "The address it was for was removed from the list. To join, sign up below."
        return pages.message(400, "This link no longer works", text, form=True)
    text = "It may have been cut short by your email program. Sign up again below."
    return pages.message(400, "This link is not valid", text, form=True)
