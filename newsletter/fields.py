"""Validated field types shared by the config and issue models, and the
wording that turns a pydantic error into "what is wrong; what is expected"."""

from __future__ import annotations

import difflib
import re
import unicodedata
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel

# C0 and C1 controls, the Unicode line/paragraph separators and bidi overrides:
# all of them can break a mail header, and none belongs in a single line of
# text. U+FFFE and U+FFFF are no characters at all; YAML and MJML refuse them.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufffe\uffff]")
# Text of several lines may hold tab and line ends, and nothing else CONTROL matches.
_CONTROL_IN_TEXT = re.compile(r"(?![\t\n\r])" + CONTROL.pattern)
# fmt: off
_C0_NAMES = [
    "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT", "FF", "CR",
    "SO", "SI", "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB",
    "ESC", "FS", "GS", "RS", "US",
]
# fmt: on


def _single_line(value: str) -> str:
    # Anything that may reach a mail header must never carry CR/LF.
    if CONTROL.search(value):
        raise ValueError(
            "contains a line break or control character; expected a single line of text"
        )
    return value


def first_control(text: str) -> re.Match[str] | None:
    """The first character CONTROL forbids in text of several lines (tab and line ends are fine)."""
    return _CONTROL_IN_TEXT.search(text)


def describe_control(char: str) -> str:
    """'the control character U+001B (ESC)': the code point and its name, as a
    reader can look it up."""
    code = ord(char)
    if code in (0xFFFE, 0xFFFF):
        return f"the character U+{code:04X} (a Unicode noncharacter)"
    name = _C0_NAMES[code] if code < 0x20 else "DEL" if code == 0x7F else None
    name = name or unicodedata.name(char, "a C1 control character")
    return f"the control character U+{code:04X} ({name})"


def _text(value: str) -> str:
    # Terminal escapes and other controls break the MJML compiler and mean nothing to a reader.
    found = first_control(value)
    if found:
        raise ValueError(f"contains {describe_control(found.group())}; delete it")
    return value


def _web_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or CONTROL.search(value):
        raise ValueError(f"{value!r} is not a web address; expected a full URL like https://…")
    if " " in value:
        raise ValueError(f"{value!r} contains a space; expected a URL with spaces as %20")
    return value


OneLine = Annotated[str, AfterValidator(_single_line)]
WebUrl = Annotated[str, AfterValidator(_web_url)]
Text = Annotated[str, AfterValidator(_text)]


def _fields_at(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The field names allowed where `path` points (for 'did you mean')."""
    current: Any = model
    for part in path:
        current = _unwrap(current)
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        current = fields[part].annotation
    return list(getattr(_unwrap(current), "model_fields", {}))


def _unwrap(annotation: Any) -> Any:
    """list[X] → X, X | None → X."""
    while getattr(annotation, "__args__", None) and not hasattr(annotation, "model_fields"):
        args = [a for a in annotation.__args__ if a is not type(None)]
        if not args:
            break
        annotation = args[0]
    return annotation


def dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def explain(error: dict[str, Any], model: type[BaseModel], secret: bool = False) -> str:
    """One error as 'what is wrong; what is expected' (without the location).
    With `secret`, the value is never repeated back."""
    kind = error["type"]
    value = error.get("input")
    shown = "the value" if secret else repr(value)
    if isinstance(value, str) and value.strip().upper().startswith("TODO"):
        return "still holds the scaffold's TODO placeholder; replace it with your own text"
    if kind == "missing":
        return "is missing; add it"
    if kind == "extra_forbidden":
        loc = tuple(error["loc"])
        allowed = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"is not a known field{hint}; remove it or fix its spelling"
    if value is None and kind.endswith("_type"):
        return "is empty; expected a value (or delete the line)"
    if kind in ("string_too_short", "too_short"):
        return "is empty; expected some text"
    if kind in ("string_too_long", "too_long"):
        limit = error.get("ctx", {}).get("max_length")
        size = len(value) if hasattr(value, "__len__") else "?"
        return f"is too long ({size} characters); expected at most {limit}"
    if kind == "string_pattern_mismatch":
        return f"{shown} is not in the expected form"
    if kind == "string_type" and isinstance(value, bool):
        return "is read as yes/no (true/false); put the text in quotes"
    if kind == "string_type":
        return f"{shown} is not text; expected text (put it in quotes)"
    if kind == "int_from_float":
        return f"{shown} is not a whole number; expected e.g. 25"
    if kind.startswith("date"):
        return f"{shown} is not a date; expected a date like 2026-11-30"
    if kind.startswith("int") or kind.startswith("float"):
        like = "1839" if error["loc"] and error["loc"][-1] == "year" else "25"
        return f"{shown} is not a number; expected a number like {like}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "is not a group of fields; expected 'key: value' lines indented under it"
    if kind == "list_type":
        return "is not a list; expected items on lines starting with '- '"
    if kind == "literal_error":
        return f"{shown} is not allowed; expected {error['ctx']['expected']}"
    if kind == "value_error":
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        if "email address" in message:
            return f"{shown} is not a valid email address; expected name@example.com"
        return message
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        expected = error["msg"].replace("Input should be", "expected a value")
        return f"{shown} is out of range; {expected}"
    return f"{error['msg']}"


# Personal names: greetings use the first name ("Hi Zoë,"), the To: header the full one.
# Courtesy titles are dropped from a greeting: "Hi Dr," greets no one.
_TITLES = frozenset(("mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev", "fr"))
_SUFFIXES = frozenset(("jr", "sr", "ii", "iii", "iv", "phd", "md", "esq"))


def split_name(full: str) -> tuple[str, str]:
    """(first, last) of a full name: 'Zoë Adams' → ('Zoë', 'Adams'); 'Adams, Zoë' →
    ('Zoë', 'Adams'); 'Dr. Zoë van Dijk' → ('Zoë', 'van Dijk'); 'Zoë' → ('Zoë', '').
    A given name of several words cannot be told from a full name: 'Mary Ann Lee'
    gives ('Mary', 'Ann Lee'); store first and last apart when they are known."""
    if "," in full:
        last, _, first = full.partition(",")
        first, last = " ".join(first.split()), " ".join(last.split())
        # 'Adams, Zoë' is inverted; 'Zoë Adams, PhD', 'Adams, Jr.' and 'Ana, the 1st' are not.
        if _given(first) and last and " " not in last:
            return first, last
    words = full.split()
    while len(words) > 1 and words[0].rstrip(".").lower() in _TITLES:
        words = words[1:]
    if not words:
        return "", ""
    return words[0].rstrip(","), " ".join(words[1:])


def _given(word: str) -> bool:
    return (
        bool(word)
        and word[0].isalpha()
        and not word[0].islower()
        and (word.rstrip(".").lower() not in _SUFFIXES)
    )


def greeting_name(full: str) -> str:
    """The name a greeting uses, from a full name ('' if there is none to use):
    the first name, or the whole name when the first word is an initial ('J. R. Hartley')
    or the 'name' is an email address, which no reader wants to be called."""
    if "@" in full:
        return ""
    first, last = split_name(full)
    if len(first.rstrip(".")) <= 1 and last:
        return f"{first} {last}"
    return first
