"""Every public URL the newsletter hands out, built in one place: the web pages,
the emails and the previews all link to the same paths."""

from __future__ import annotations

from newsletter.tokens import Signer


class Links:
    """The site's URLs under `base_url`; a signer is needed only for unsubscribe links."""

    def __init__(self, base_url: str, signer: Signer | None = None) -> None:
        self.base = base_url.rstrip("/")
        self._signer = signer

    def home(self) -> str:
        return f"{self.base}/"

    def unsubscribe(self, subscriber_id: int, email: str) -> str:
        if self._signer is None:
            raise ValueError("unsubscribe links are signed: build Links with a Signer")
        return (
            f"{self.base}/unsubscribe?token={self._signer.unsubscribe_token(subscriber_id, email)}"
        )

    def public_unsubscribe(self) -> str:
        """The tokenless page that explains where a reader's own link is (for previews)."""
        return f"{self.base}/unsubscribe"

    def confirm(self, token: str) -> str:
        return f"{self.base}/confirm?token={token}"

    def web(self, slug: str) -> str:
        return f"{self.base}/archive/{slug}"

    def archive(self) -> str:
        return f"{self.base}/archive"

    def feed(self) -> str:
        return f"{self.base}/feed.xml"
