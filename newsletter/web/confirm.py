"""GET /confirm?token=…: the link in the confirmation email."""

from __future__ import annotations

from fastapi import APIRouter

from newsletter.service import signup
from newsletter.tokens import TokenError, TokenExpired
from newsletter.web.deps import Context

router = APIRouter()


@router.get("/confirm")  # not HEAD: a link checker's HEAD must not confirm anyone
async def confirm(ctx: Context, token: str = ""):
    web, pages = ctx.config.web, ctx.pages
    try:
        signup.confirm_link(
            ctx.engine, token[:500], signer=ctx.signer, links=ctx.links,
            max_age_seconds=web.confirm_days * 86400, welcome=web.welcome_email,
        )  # fmt: skip
    except TokenExpired:
        text = f"Confirmation links work for {web.confirm_days} days. Sign up again below."
        return pages.message(400, "This link has expired", text, form=True)
    except signup.LinkUsed:
        text = (
            "It was used before, or a newer link replaced it. If you are not getting "
            "the newsletter, sign up again below."
        )
        return pages.message(400, "This link was already used", text, form=True)
    except TokenError:
        text = "It may have been cut short by your email program. Sign up again below."
        return pages.message(400, "This link is not valid", text, form=True)
    if web.welcome_email:
        ctx.mail_queued()
    newsletter = ctx.config.newsletter
    return pages.message(
        200,
        "You're in!",
        f"Welcome to {newsletter.name}. The next issue arrives on "
        f"{newsletter.weekday.capitalize()}.",
    )
