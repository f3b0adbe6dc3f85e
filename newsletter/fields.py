"""Validated field types shared by the config and issue models, and the
wording that turns a pydantic error into "what is wrong; what is expected"."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _single_line(value: str) -> str:
    # Anything that may reach a mail header must never carry CR/LF.
    if _CONTROL.search(value):
        raise ValueError(
            "contains a line break or control character; expected a single line of text"
        )
    return value


def _web_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or _CONTROL.search(value):
        raise ValueError(f"{value!r} is not a web address; expected a full URL like https://…")
    if " " in value:
        raise ValueError(f"{value!r} contains a space; expected a URL with spaces as %20")
    return value


OneLine = Annotated[str, AfterValidator(_single_line)]
WebUrl = Annotated[str, AfterValidator(_web_url)]


def field_names(model: type[BaseModel]) -> set[str]:
    """Every field name in a model and the models nested in it."""
    names: set[str] = set()
    pending: list[Any] = [model]
    seen: set[Any] = set()
    while pending:
        item = pending.pop()
        if item in seen:
            continue
        seen.add(item)
        if isinstance(item, type) and issubclass(item, BaseModel):
            for name, info in item.model_fields.items():
                names.add(name)
                pending.append(info.annotation)
        for arg in getattr(item, "__args__", ()) or ():
            pending.append(arg)
    return names


def dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def explain(error: dict[str, Any], known: set[str]) -> str:
    """One error as 'what is wrong; what is expected' (without the location)."""
    kind = error["type"]
    value = error.get("input")
    if isinstance(value, str) and value.strip().upper().startswith("TODO"):
        return "still holds the scaffold's TODO placeholder; replace it with your own text"
    if kind == "missing":
        return "is missing; add it"
    if kind == "extra_forbidden":
        name = str(error["loc"][-1])
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"is not a known field{hint}; remove it or fix its spelling"
    if kind == "string_too_short":
        return "is empty; expected some text"
    if kind == "string_too_long":
        limit = error.get("ctx", {}).get("max_length")
        return f"is too long ({len(value)} characters); expected at most {limit}"
    if kind in ("string_type",):
        return f"{value!r} is not text; expected text (put it in quotes)"
    if kind.startswith("date"):
        return f"{value!r} is not a date; expected a date like 2026-11-30"
    if kind.startswith("int") or kind.startswith("float"):
        return f"{value!r} is not a number; expected a number like 1839"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "is not a group of fields; expected 'key: value' lines indented under it"
    if kind == "list_type":
        return "is not a list; expected items on lines starting with '- '"
    if kind == "literal_error":
        return f"{value!r} is not allowed; expected {error['ctx']['expected']}"
    if kind == "value_error":
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        if "email address" in message:
            return f"{value!r} is not a valid email address; expected name@example.com"
        return message
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        expected = error["msg"].replace("Input should be", "expected a value")
        return f"{value!r} is out of range; {expected}"
    return f"{error['msg']}"
