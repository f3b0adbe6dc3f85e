"""The public pages (`newsletter serve`)."""

from newsletter.web.app import create_app

__all__ = ["create_app"]
