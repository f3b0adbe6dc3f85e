"""Per-recipient slots: markers placed once when an issue is rendered, filled
for each recipient by joining precut pieces (no parsing, no re-rendering).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from newsletter.errors import NewsletterError

# name: the greeting's first name; full_name: the name as stored ("Zoë" / "Zoë Adams").
NAMES = ("name", "full_name", "unsubscribe_url", "web_url", "archive_url", "confirm_url")


def new_prefix() -> str:
    # A fresh nonce per render, so text an editor types can never become a slot.
    return f"nlslot{secrets.token_hex(6)}"


class SlotError(NewsletterError):
    """A template asked for a slot that does not exist."""


def marker(prefix: str, name: str) -> str:
    if name not in NAMES:
        raise SlotError(f"unknown slot {name!r}; expected one of {', '.join(NAMES)}")
    return f"[[{prefix}:{name}]]"


@dataclass(frozen=True)
class SlotTemplate:
    """Text cut at its slots: `head`, then (slot name, following text) pairs."""

    head: str
    tail: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str, prefix: str) -> SlotTemplate:
        parts = re.split(rf"\[\[{re.escape(prefix)}:(\w+)\]\]", text)
        return cls(head=parts[0], tail=tuple(zip(parts[1::2], parts[2::2], strict=True)))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.tail)

    def fill(self, values: Mapping[str, str]) -> str:
        out = [self.head]
        for name, text in self.tail:
            out.append(values[name])
            out.append(text)
        return "".join(out)
