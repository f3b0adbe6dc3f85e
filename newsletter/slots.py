"""Per-recipient slots: markers placed once when an issue is rendered, filled
for each recipient with one `str.format_map` call (no parsing, no re-rendering).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

NAMES = ("name", "unsubscribe_url", "web_url")


def new_prefix() -> str:
    # A fresh nonce per render, so text an editor types can never become a slot.
    return f"nlslot{secrets.token_hex(6)}"


def marker(prefix: str, name: str) -> str:
    if name not in NAMES:
        raise KeyError(f"unknown slot {name!r}; expected one of {', '.join(NAMES)}")
    return f"[[{prefix}:{name}]]"


@dataclass(frozen=True)
class SlotTemplate:
    """Text with named holes: `pattern` is a format string whose own braces are doubled."""

    pattern: str
    names: frozenset[str]

    @classmethod
    def parse(cls, text: str, prefix: str) -> SlotTemplate:
        parts = re.split(rf"\[\[{re.escape(prefix)}:(\w+)\]\]", text)
        literal = [p.replace("{", "{{").replace("}", "}}") for p in parts[0::2]]
        holes = parts[1::2]
        pattern = literal[0] + "".join(
            f"{{{h}}}{lit}" for h, lit in zip(holes, literal[1:], strict=True)
        )
        return cls(pattern=pattern, names=frozenset(holes))

    def fill(self, values: Mapping[str, str]) -> str:
        return self.pattern.format_map(values)
