"""/unsubscribe?token=…: a GET shows a button and changes nothing (mail scanners
prefetch links); the POST unsubscribes, also as RFC 8058's one-click POST."""

from __future__ import annotations

from fastapi import APIRouter

from newsletter.service import signup
from newsletter.tokens import TokenError
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
async def unsubscribe_page(ctx: Context, token: str = ""):
    try:
        signup.check_unsubscribe(token[:500], signer=ctx.signer)
    except TokenError:
        return _not_valid(ctx)
    return ctx.pages.page("unsubscribe", token=token)


@router.post("/unsubscribe")
async def unsubscribe(ctx: Context, token: str = ""):
    # RFC 8058: one POST with List-Unsubscribe=One-Click, no cookie, no redirect.
    try:
        signup.unsubscribe_link(ctx.engine, token[:500], signer=ctx.signer)
    except TokenError:
        return _not_valid(ctx)
    return ctx.pages.message(
        200, "You're unsubscribed", "You will get no more issues. Sorry to see you go!"
    )
