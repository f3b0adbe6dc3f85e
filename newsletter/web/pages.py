"""Rendering the site's pages: every HTML answer, error pages included, goes
through `Pages`, so each carries the same security headers."""

from __future__ import annotations

import jinja2
from fastapi.responses import HTMLResponse, JSONResponse

from newsletter.config import Config
from newsletter.links import Links

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; "
    "form-action 'self' {base}; frame-ancestors 'none'; base-uri 'none'"
)


def mask_email(address: str) -> str:
    """a••@example.com: enough for its owner to recognise, little for anyone else
    who sees the page (a forwarded mail, a scanner's log)."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}\u2022\u2022@{domain}"


class Pages:
    def __init__(self, env: jinja2.Environment, config: Config, links: Links) -> None:
        self.env, self.newsletter, self.base = env, config.newsletter, links.base
        self.consent = config.web.consent_text.replace("{name}", config.newsletter.name)
        self.headers = {
            "Cache-Control": "no-store",
            "Content-Security-Policy": CSP.format(base=links.base),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }

    def page(self, template: str, status: int = 200, **context) -> HTMLResponse:
        """templates/web/<template>.html.j2 with the newsletter's details."""
        values = {"error": None, "email": "", "name": "", "show_form": False, **context}
        body = self.env.get_template(f"web/{template}.html.j2").render(
            newsletter=self.newsletter, base_url=self.base, consent=self.consent, **values
        )
        return HTMLResponse(body, status_code=status, headers=self.headers)

    def message(self, status: int, heading: str, text: str, *, form: bool = False) -> HTMLResponse:
        """A page that says one thing, with the signup form under it when `form`."""
        return self.page("page", status, heading=heading, message=text, show_form=form)

    def html(self, body: str) -> HTMLResponse:
        return HTMLResponse(body, headers=self.headers)

    def json(self, content: dict, status: int = 200) -> JSONResponse:
        return JSONResponse(content, status_code=status, headers=self.headers)
