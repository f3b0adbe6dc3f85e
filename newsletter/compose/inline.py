"""CSS inlining: MJML's HTML → the same page with its <style> rules moved into style
attributes (premailer), for mail clients that drop <style>.

`cached` keeps premailer's output in the newsletter folder's cache (compose/cache.py):
`check` and `preview` of an issue whose rendered page has not changed since skip
premailer and the import of premailer and cssutils (about 80 ms of `check`). The key
is the page itself (slot nonce aside), the installed inliner and this file, so no
edit can be served stale output.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import re
import sys
import types
from pathlib import Path

from newsletter.compose import cache

KEEP = 32  # inlined pages kept: every edit checked adds one, the oldest go
# What a page's slot nonce becomes in its cache key, so that a new nonce per render
# still finds the page inlined last time.
_NONCE = "nlslotNONCE"
_STYLE = re.compile(r"<style([^>]*)>([^<]*)</style>", re.IGNORECASE)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_MEDIA_BLOCKS = re.compile(r"(?:\s*@media[^{};]*\{)+\s*")
# MJML hides the preheader with white 1px text; SpamAssassin scores text coloured like
# its background (HTML_FONT_LOW_CONTRAST), so it is hidden with no colour at all.
_MJML_PREHEADER = re.compile(r'<div style="display:none;font-size:1px;color:#ffffff;[^"]*">')
_PREHEADER = (
    '<div style="display:none;max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all;">'
)
# caniemail flags it and `target="_blank"`; MJML writes both on every button.
_CURSOR_AUTO = re.compile(r"cursor:\s*auto;?\s*")
# MJML's wrapper of the whole body, which announces the email as an article.
_ARTICLE = re.compile(r'<div\b[^>]*\brole="article"')


def inline_css(page: str) -> str:
    """Move <style> rules into style attributes for clients that drop <style>;
    @media rules cannot be inlined and stay in the head."""
    page = _STYLE.sub(_leave_alone, page)
    premailer = _premailer()
    inlined = premailer.Premailer(
        page,
        allow_network=False,  # mj-font links Google Fonts; a send must not depend on the network
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        keep_style_tags=False,
        strip_important=False,
    ).transform(pretty_print=False)
    # premailer drops the doctype; without it clients render in quirks mode.
    doctype = "<!doctype html>"
    inlined = inlined if inlined.lower().startswith(doctype) else doctype + inlined
    return _for_mail_clients(inlined)


def cached(page: str, nonce: str, root: Path) -> str:
    """inline_css(page), read from the folder's cache when the same page (with another
    slot nonce) was inlined before."""
    key = cache.fingerprint(_inliner(), page.replace(nonce, _NONCE)) + ".html"
    old_nonce, _, inlined = (cache.read(root, "inline", key) or "").partition("\n")
    if old_nonce.isalnum() and old_nonce in inlined:
        return inlined.replace(old_nonce, nonce)
    inlined = inline_css(page)
    cache.write(root, "inline", key, f"{nonce}\n{inlined}", keep=KEEP)
    return inlined


@functools.cache
def _inliner() -> str:
    """What else decides the output: this file, and the installed premailer, cssutils
    and lxml (an upgrade rewrites their files). Found without importing them."""
    parts = [cache.fingerprint(Path(__file__))]
    for name in ("premailer", "cssutils", "lxml"):
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin) if spec and spec.origin else None
        stat = origin.stat() if origin else None
        parts.append(f"{origin}:{stat and stat.st_size}:{stat and stat.st_mtime_ns}")
    return "\n".join(parts)


@functools.cache
def _premailer() -> types.ModuleType:
    """premailer, without importing `requests` (about 40 ms of `check`): premailer
    imports it only to fetch external stylesheets, which allow_network=False forbids.
    Its `requests` is a stand-in that imports the real one on first use."""
    placed = sys.modules.setdefault("requests", _STANDIN) is _STANDIN
    try:
        premailer = importlib.import_module("premailer.premailer")
    finally:
        if placed and sys.modules.get("requests") is _STANDIN:
            del sys.modules["requests"]
    _without_css_validation()
    return premailer


def _real_requests(name: str):
    module = importlib.import_module("requests")
    if module is _STANDIN:  # another thread imported it while premailer was importing
        raise AttributeError(name)
    return getattr(module, name)


_STANDIN = types.ModuleType("requests", "Imports requests when premailer first uses it.")
_STANDIN.__getattr__ = _real_requests  # PEP 562: called for any name the stand-in lacks


def _without_css_validation() -> None:
    """premailer validates every inline style against cssutils' CSS profiles even with
    disable_validation=True (merge_styles ignores it). Validating only logs, and the
    output is the same without it, but compiling the profiles' regular expressions
    is about half of a process's first render: `check` would pay it every time."""
    import cssutils

    cssutils.profile.removeProfile(all=True)


def _leave_alone(style: re.Match) -> str:
    """Mark for premailer the <style> blocks it has nothing to do for: cssutils would
    fetch every @import (mj-font adds one for Google Fonts) even with allow_network=False,
    and re-serialising @media blocks, which stay in the head anyway, was a third of
    the inliner's time."""
    attributes, css = style.groups()
    if "data-premailer" in attributes or not ("@import" in css or _only_media(css)):
        return style.group(0)
    return f'<style{attributes} data-premailer="ignore">{css}</style>'


def _only_media(css: str) -> bool:
    """Whether every top-level rule of the stylesheet is an @media block."""
    depth, top = 0, []
    for char in _CSS_COMMENT.sub("", css):
        if char == "}":
            depth -= 1
        elif depth == 0:
            top.append(char)
        depth += char == "{"
    return depth == 0 and _MEDIA_BLOCKS.fullmatch("".join(top)) is not None


def _for_mail_clients(page: str) -> str:
    """What MJML writes but inboxes and spam filters hold against it: a white-on-white
    preheader, `target="_blank"`, `cursor:auto`; and a main landmark for screen
    readers (webmail passes roles through, and axe asks for one)."""
    page = _MJML_PREHEADER.sub(_PREHEADER, page, count=1)
    page = _CURSOR_AUTO.sub("", page.replace(' target="_blank"', ""))
    article, end = _ARTICLE.search(page), page.rfind("</body>")
    if article and end > article.start() and 'role="main"' not in page:
        start = article.start()
        page = f'{page[:start]}<div role="main">{page[start:end]}</div>{page[end:]}'
    return page
