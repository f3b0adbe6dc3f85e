"""Markdown prose: an issue body split into articles, expert quotes lifted out,
and HTML and plain text both produced from the same markdown-it tokens.

Raw HTML in Markdown is off: what the editor writes is text, and the
templates decide the markup.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from newsletter.errors import NewsletterError

WIDTH = 72
# An attribution line under a blockquote: "— Seth Godin", "-- Seth Godin", "―Seth Godin".
_ATTRIBUTION = re.compile(r"^\s*(?:—|–|―|--)\s*(?P<who>\S.*)$")

_md = MarkdownIt("commonmark", {"html": False, "typographer": True})
_md.enable(["replacements", "smartquotes", "strikethrough"])


class ContentError(NewsletterError):
    """The Markdown body breaks a rule; `line` is counted in the body."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Prose:
    html: Markup
    text: str


@dataclass(frozen=True)
class Quote:
    html: Markup
    text: str
    author: str
    source: str | None = None


Block = Prose | Quote


@dataclass(frozen=True)
class Article:
    heading: str
    blocks: tuple[Block, ...]
    line: int

    @property
    def is_empty(self) -> bool:
        return not any(block.text.strip() for block in self.blocks)


@dataclass(frozen=True)
class Link:
    kind: str  # "link" or "image"
    url: str
    alt: str
    line: int  # in the body


@dataclass(frozen=True)
class Body:
    intro: tuple[Block, ...]
    articles: tuple[Article, ...]
    links: tuple[Link, ...] = ()


def parse_body(text: str) -> Body:
    """Split a body on its `##` headings into articles (text before the first is the intro)."""
    tokens = _md.parse(text)
    sections: list[tuple[str, int, list[Token]]] = [("", 0, [])]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open" and tok.level == 0:
            line = tok.map[0] + 1 if tok.map else 0
            if tok.tag == "h1":
                raise ContentError(
                    "body: a '#' heading; the title comes from the front matter, so start "
                    "each article with '## Heading'",
                    line,
                )
            if tok.tag == "h2":
                heading = _inline_text(tokens[i + 1].children or []).strip()
                sections.append((heading, line, []))
                i += 3  # heading_open, inline, heading_close
                continue
        sections[-1][2].append(tok)
        i += 1
    intro = _blocks(sections[0][2])
    articles = tuple(Article(h, _blocks(toks), line) for h, line, toks in sections[1:])
    return Body(intro=intro, articles=articles, links=tuple(_links(tokens)))


def _links(tokens: list[Token]):
    for tok in tokens:
        if tok.type != "inline" or not tok.map:
            continue
        line = tok.map[0] + 1
        for child in tok.children or []:
            if child.type == "link_open":
                yield Link("link", str(child.attrGet("href") or ""), "", line)
            elif child.type == "image":
                yield Link("image", str(child.attrGet("src") or ""), child.content, line)
            if child.type == "softbreak":
                line += 1


def markdown_block(text: str) -> Prose:
    """A standalone Markdown field (the closing note, a theme-song note)."""
    tokens = _md.parse(text)
    return _prose(tokens)


def quote(text: str, author: str, source: str | None = None) -> Quote:
    """A front-matter quote, rendered like one lifted out of an article."""
    prose = markdown_block(text)
    return Quote(html=prose.html, text=prose.text, author=author, source=source)


def _blocks(tokens: list[Token]) -> tuple[Block, ...]:
    """Group top-level tokens into prose runs and quotes with an attribution."""
    blocks: list[Block] = []
    prose: list[Token] = []

    def flush() -> None:
        if prose:
            blocks.append(_prose(prose))
            prose.clear()

    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "blockquote_open" and tok.level == 0:
            end = next(j for j in range(i, len(tokens)) if _closes(tokens[j], tok))
            inner = tokens[i + 1 : end]
            found = _attribution_after(tokens, end, inner) or _attribution_inside(inner)
            if found:
                flush()
                author_tokens, consumed, inner = found
                blocks.append(_quote(inner, author_tokens))
                i = end + 1 + consumed
                continue
        prose.append(tok)
        i += 1
    flush()
    return tuple(blocks)


def _closes(tok: Token, opener: Token) -> bool:
    return tok.type == "blockquote_close" and tok.level == opener.level


def _attribution_after(tokens: list[Token], end: int, inner: list[Token]):
    """`> quote`, a blank line, then `— Author` as a paragraph of its own."""
    if end + 2 < len(tokens):
        opener, inline = tokens[end + 1], tokens[end + 2]
        if opener.type == "paragraph_open" and opener.level == 0 and _is_attribution(inline):
            return inline.children or [], 3, inner


def _attribution_inside(inner: list[Token]):
    """`— Author` as the quote's last line, or as its last paragraph."""
    inlines = [j for j, t in enumerate(inner) if t.type == "inline"]
    if not inlines:
        return None
    last = inner[inlines[-1]]
    children = last.children or []
    breaks = [k for k, c in enumerate(children) if c.type in ("softbreak", "hardbreak")]
    cut = breaks[-1] + 1 if breaks else 0
    tail = children[cut:]
    if not tail or not _ATTRIBUTION.match(_inline_text(tail)):
        return None
    if cut == 0:  # the whole last paragraph is the attribution
        return tail, 0, inner[: inlines[-1] - 1]
    trimmed = last.copy(children=children[: cut - 1])
    trimmed.content = last.content.rsplit("\n", 1)[0]
    return tail, 0, [*inner[: inlines[-1]], trimmed, *inner[inlines[-1] + 1 :]]


def _is_attribution(inline: Token) -> bool:
    return inline.type == "inline" and bool(_ATTRIBUTION.match(_inline_text(inline.children or [])))


def _quote(inner: list[Token], author_tokens: list[Token]) -> Quote:
    match = _ATTRIBUTION.match(_inline_text(author_tokens, with_urls=False))
    author = match.group("who").strip() if match else ""
    source = next(
        (t.attrGet("href") for t in author_tokens if t.type == "link_open"),
        None,
    )
    return Quote(
        html=_html(inner),
        text=_text(inner),
        author=author,
        source=str(source) if source else None,
    )


def _prose(tokens: list[Token]) -> Prose:
    return Prose(html=_html(tokens), text=_text(tokens))


def _html(tokens: list[Token]) -> Markup:
    # Safe by construction: raw HTML is off, so markdown-it escapes all text.
    return Markup(_md.renderer.render(tokens, _md.options, {}))  # noqa: S704


def _inline_text(children: list[Token], with_urls: bool = True) -> str:
    out: list[str] = []
    links: list[tuple[str, int]] = []
    for tok in children:
        if tok.type in ("text", "code_inline", "html_inline"):
            out.append(tok.content)
        elif tok.type == "softbreak":
            out.append(" ")
        elif tok.type == "hardbreak":
            out.append("\n")
        elif tok.type == "link_open":
            links.append((str(tok.attrGet("href") or ""), len(out)))
        elif tok.type == "link_close" and links:
            href, start = links.pop()
            label = "".join(out[start:])
            if with_urls and href and href.removeprefix("mailto:") != label:
                out.append(f" <{href}>")
        elif tok.type == "image":
            alt = tok.content or "image"
            out.append(f"[{alt}] <{tok.attrGet('src')}>" if with_urls else alt)
    return "".join(out)


def _text(tokens: list[Token]) -> str:
    """Plain text from block tokens: wrapped paragraphs, '- ' lists, '> ' quotes,
    links as <URL>, code kept as written."""
    blocks: list[tuple[str, int | None]] = []  # (text, which tight list it is an item of)
    quote_depth = 0
    lists: list[list[int | None]] = []
    marker: str | None = None
    heading = False
    tight: int | None = None
    opened = 0
    for tok in tokens:
        kind = tok.type
        if kind == "blockquote_open":
            quote_depth += 1
        elif kind == "blockquote_close":
            quote_depth -= 1
        elif kind in ("bullet_list_open", "ordered_list_open"):
            start = tok.attrGet("start")
            lists.append([int(start or 1) if kind == "ordered_list_open" else None])
            opened += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            top = lists[-1]
            marker = "- " if top[0] is None else f"{top[0]}. "
            if top[0] is not None:
                top[0] += 1
        elif kind == "paragraph_open":
            tight = opened if tok.hidden else None
        elif kind == "heading_open":
            heading = True
        elif kind == "heading_close":
            heading = False
        elif kind == "inline":
            base = "> " * quote_depth + "   " * max(len(lists) - 1, 0)
            first = base + (marker or ("   " if lists else ""))
            rest = base + ("   " if lists else "")
            text = _inline_text(tok.children or [])
            blocks.append((wrap(text.upper() if heading else text, WIDTH, first, rest), tight))
            marker = None
        elif kind in ("fence", "code_block"):
            pad = "> " * quote_depth + "    "
            blocks.append((textwrap.indent(tok.content.rstrip("\n"), pad), None))
        elif kind == "hr":
            blocks.append(("* * *", None))
    out = ""
    for i, (text, in_list) in enumerate(blocks):
        if i:
            out += "\n" if in_list is not None and in_list == blocks[i - 1][1] else "\n\n"
        out += text
    return out


def reflow(text: str, width: int = WIDTH, first: str = "", rest: str = "") -> str:
    """Re-wrap already wrapped paragraphs to a new width and indent."""
    paragraphs = [" ".join(p.split("\n")) for p in text.split("\n\n")]
    return f"\n{rest.rstrip()}\n".join(
        wrap(p, width, first if i == 0 else rest, rest) for i, p in enumerate(paragraphs)
    )


def wrap(text: str, width: int = WIDTH, first: str = "", rest: str = "") -> str:
    """Wrap each line of `text`, keeping long words (URLs) whole."""
    lines = []
    for i, line in enumerate(text.split("\n")):
        lines.append(
            textwrap.fill(
                line,
                width,
                initial_indent=first if i == 0 else rest,
                subsequent_indent=rest,
                break_long_words=False,  # URLs must stay whole to stay clickable
                break_on_hyphens=False,
            )
            or (first if i == 0 else rest).rstrip()
        )
    return "\n".join(lines)
