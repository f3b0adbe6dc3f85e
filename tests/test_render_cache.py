"""The inlined-page cache of `check` and `preview`: the same bytes as a fresh render,
and never a page that an edit to the issue, a template or the settings has changed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
from processes import loaded_after

from newsletter.compose import cache, inline
from newsletter.compose.issue import load_issue
from newsletter.compose.render import environment, prepare
from newsletter.config import load_config

SAMPLE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
READER = {"name": "Ana", "unsubscribe_url": "https://u.example/x?t=1", "web_url": "https://w/x"}


def bodies(folder: Path, cached: bool, config=None) -> tuple[str, str]:
    config = config or load_config(folder / "newsletter.toml", environ={})
    filled = prepare(load_issue(folder / SAMPLE), config, cached=cached).fill(**READER)
    return filled.html, filled.text


def pages(folder: Path) -> list[Path]:
    return sorted((folder / cache.CACHE_DIR / "inline").glob("*.html"))


def test_cached_check_renders_the_sample_issue_byte_for_byte_as_a_send_does(folder):
    sent = bodies(folder, cached=False)
    first = bodies(folder, cached=True)  # inlines, and fills the cache
    assert len(pages(folder)) == 1
    environment.cache_clear()  # as in a new process: compiled templates come from disk
    again = bodies(folder, cached=True)  # from the cache, with a new slot nonce
    assert first == sent
    assert again == sent
    assert len(pages(folder)) == 1


def test_a_page_in_the_cache_is_what_a_check_reads(folder):
    """The counterpart of the test above: without it, a cache never read would pass."""
    bodies(folder, cached=True)
    [page] = pages(folder)
    page.write_text(page.read_text().replace("Survival", "CACHED-Survival"))
    html, _ = bodies(folder, cached=True)
    assert "CACHED-Survival" in html
    assert "CACHED-Survival" not in bodies(folder, cached=False)[0]


def test_editing_the_issue_renders_it_afresh(folder):
    bodies(folder, cached=True)
    issue = folder / SAMPLE
    issue.write_text(issue.read_text().replace("Survival", "Thriving"))
    html, text = bodies(folder, cached=True)
    assert "Thriving" in html
    assert (html, text) == bodies(folder, cached=False)
    assert len(pages(folder)) == 2


def test_editing_a_template_style_renders_it_afresh(folder):
    bodies(folder, cached=True)
    template = folder / "templates" / "issue.mjml.j2"
    source = template.read_text()
    assert "a { color: #0b5cad; }" in source
    template.write_text(source.replace("a { color: #0b5cad; }", "a { color: #123456; }"))
    environment.cache_clear()  # as in the next process: only the disk cache knows it
    html, _ = bodies(folder, cached=True)
    assert 'style="color:#123456"' in html.replace(" ", "")
    assert html == bodies(folder, cached=False)[0]


def test_editing_the_settings_renders_it_afresh(folder):
    before, _ = bodies(folder, cached=True)
    settings = folder / "newsletter.toml"
    text = settings.read_text()
    name = load_config(settings, environ={}).newsletter.name
    settings.write_text(text.replace(name, "The Renamed Weekly"))
    html, text_part = bodies(folder, cached=True)
    assert "The Renamed Weekly" in html and "The Renamed Weekly" not in before
    assert (html, text_part) == bodies(folder, cached=False)


def test_a_damaged_or_unwritable_cache_only_costs_time(folder):
    sent = bodies(folder, cached=False)
    bodies(folder, cached=True)
    store = folder / cache.CACHE_DIR
    entries = [p for p in store.rglob("*") if p.is_file() and p.name != ".gitignore"]
    assert {p.parent.name for p in entries} == {"inline", "templates"}
    # e.g. a disk that filled up, a file from another program, a half-written entry
    for damage in (b"", b"\xff\xfe not text", jinja2.bccache.bc_magic + b"half"):
        for entry in entries:
            entry.write_bytes(damage)
        environment.cache_clear()  # a new process: compiled templates come from disk
        assert bodies(folder, cached=True) == sent
    shutil.rmtree(store)
    store.write_text("a file where the cache's folder goes")
    environment.cache_clear()
    assert bodies(folder, cached=True) == sent


def test_the_cache_keeps_the_newest_pages_and_ignores_itself_in_git(folder, monkeypatch):
    monkeypatch.setattr(inline, "KEEP", 2)
    issue = folder / SAMPLE
    original = issue.read_text()
    for word in ("One", "Two", "Three"):
        issue.write_text(original.replace("Survival", word))
        bodies(folder, cached=True)
    assert len(pages(folder)) == 2
    assert (folder / cache.CACHE_DIR / ".gitignore").read_text().splitlines()[-1] == "*"


@pytest.mark.parametrize("cached", [False, True])
def test_check_loads_premailer_only_on_a_cache_miss_and_never_requests(folder, cached):
    """What makes `check` fast, kept: a second check of an unchanged issue loads no
    inliner, and the first one loads premailer without requests."""
    if cached:
        bodies(folder, cached=True)
    code = (
        "from newsletter.cli import app\n"
        "try:\n"
        f"    app(['check', {SAMPLE!r}], prog_name='newsletter')\n"
        "except SystemExit:\n"
        "    pass"
    )
    names = ["premailer", "cssutils", "requests", "urllib3"]
    loaded, printed = loaded_after(code, names, cwd=folder)
    assert "Checked 1 issue(s)" in printed
    assert loaded == ([] if cached else ["premailer", "cssutils"])


def test_premailer_still_reaches_requests_when_it_asks_for_it():
    """The stand-in premailer imports in place of requests is the real thing on use."""
    script = (
        "import sys\n"
        "from newsletter.compose import inline\n"
        "inline.inline_css('<html><head><style>p{color:red}</style></head><body><p>x</p></body></html>')\n"
        "print('requests' in sys.modules)\n"
        "import premailer.premailer as p\n"
        "print(p.requests.Session.__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "requests.sessions"]
