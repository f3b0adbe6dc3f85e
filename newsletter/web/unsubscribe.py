"""/unsubscribe?token=…: a GET shows a button and changes nothing (mail scanners
prefetch links); the POST unsubscribes, also as RFC 8058's one-click POST, and
offers the way back: POST /resubscribe with the same token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from newsletter.service import signup
from newsletter.storage.models import Status
from newsletter.tokens import TokenError
from newsletter.web.confirm import MAX_TOKEN, posted_token
from newsletter.web.deps import Context, WebContext

router = APIRouter()


def _not_valid(ctx: WebContext):
    return ctx.pages.message(
        400,
        "This unsubscribe link is not valid",
        "Please use the unsubscribe link at the bottom of one of your emails; it works "
        "without a login.",
    )


@router.api_route("/unsubscribe", methods=["GET", "HEAD"])
def unsubscribe_page(ctx: Context, token: str = ""):
    token = token[:MAX_TOKEN]
    try:
        status = signup.unsubscribe_status(ctx.engine, token, signer=ctx.signer)
    except TokenError:
        return _not_valid(ctx)
    # Someone who left already (an old email's link) is offered the way back instead.
    return ctx.pages.page("unsubscribe", token=token, left=status == Status.unsubscribed)


@router.post("/unsubscribe")
def unsubscribe(ctx: Context, token: str = ""):
    # RFC 8058: one POST with List-Unsubscribe=One-Click, no cookie, no redirect.
    token = token[:MAX_TOKEN]
    try:
        signup.unsubscribe_link(ctx.engine, token, signer=ctx.signer)
    except TokenError:
        return _not_valid(ctx)
    return ctx.pages.page("unsubscribe", token=token, left=True)


@router.post("/resubscribe")
async def resubscribe(request: Request, ctx: Context, token: str = ""):
    token = (await posted_token(request, token))[:MAX_TOKEN]
    try:
        form = f"{ctx.links.public_unsubscribe()} (resubscribe button)"
        back = await run_in_threadpool(
            signup.resubscribe_link, ctx.engine, token, signer=ctx.signer,
            consent=ctx.pages.consent, form=form,
        )  # fmt: skip
    except TokenError:
        return _not_valid(ctx)
    newsletter = ctx.config.newsletter
    if not back:
        text = (
            "We need to check your address again first: sign up below and press the "
            "button in the email we send."
        )
        return ctx.pages.message(200, "Please sign up again", text, form=True)
    return ctx.pages.message(
        200,
        "You're back!",
        f"You will get {newsletter.name} again, starting with the next issue on "
        f"{newsletter.weekday.capitalize()}.",
    )
