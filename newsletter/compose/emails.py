"""Transactional emails (confirmation, welcome): rendered from templates/emails/
like issues are (Jinja2 → MJML → inlined HTML, plus text), once per kind, with
the same slots an issue has; the mail stage fills and sends them like issues."""

from __future__ import annotations

import functools
from pathlib import Path

from markupsafe import Markup

from newsletter.compose import inline, render, slots
from newsletter.compose.render import PreparedIssue
from newsletter.config import Config, NewsletterSection

SUBJECTS = {
    "confirm": "Confirm your subscription to {name}",
    "welcome": "Welcome to {name}",
}
# The slots each kind's templates may use; everything else is fixed per newsletter.
SLOTS = ("name", "confirm_url", "archive_url", "unsubscribe_url")


def prepare_email(config: Config, kind: str) -> PreparedIssue:
    """A kind of email, rendered once (MJML and CSS inlining cost milliseconds)."""
    return _prepared(config.root, config.newsletter, kind, config.web.confirm_days)


@functools.lru_cache(maxsize=16)
def _prepared(root: Path, newsletter: NewsletterSection, kind: str, days: int) -> PreparedIssue:
    env = render.environment(root)
    prefix = slots.new_prefix()
    subject = SUBJECTS[kind].format(name=newsletter.name)
    markers = {name: slots.marker(prefix, name) for name in SLOTS}
    values = {"newsletter": newsletter, "subject": subject, "days": days}
    html_values = values | {k: Markup(v) for k, v in markers.items()}  # noqa: S704 (fixed ASCII)
    page = env.get_template(f"emails/{kind}.mjml.j2").render(**html_values)
    html = inline.inline_css(render.compile_mjml(page))
    text = env.get_template(f"emails/{kind}.txt.j2").render(**values, **markers)
    return render.cut(kind, subject, html, text, prefix, newsletter)
