"""The one base class for mistakes a user can make and fix.

Each module raises its own small subclass; the CLI prints any of them as a
one-line message and exits non-zero, without a traceback.
"""

import os
from pathlib import Path


def shown(path: str | Path) -> str:
    """A path as the editor would type it: relative when under the current folder."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


class NewsletterError(Exception):
    """A user-facing error: its text names the file or field and the fix."""

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        # Further lines (one per problem) when one file holds several mistakes.
        self.details = details or []

    def lines(self) -> list[str]:
        if self.details and str(self) not in self.details:
            return [str(self), *self.details]
        return self.details or [str(self)]
