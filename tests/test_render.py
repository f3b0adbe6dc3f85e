"""Rendering: Jinja2 → MJML → HTML → inlined CSS once, and cheap per-recipient fills."""

from __future__ import annotations

import re
import socket

import lxml.html
import pytest
from conftest import FULL_ISSUE, MINIMAL_ISSUE

from newsletter.compose.issue import load_issue
from newsletter.compose.render import TemplateError, prepare

FONTS = "https://fonts.googleapis.com/css?family=Lato"
UNSUB = "https://news.example.com/unsubscribe?token=TOKEN-123"
WEB = "https://news.example.com/archive/2026-11-24-b2b-flip-flop"


@pytest.fixture
def prepared(write_issue, config):
    return prepare(load_issue(write_issue(FULL_ISSUE)), config)


@pytest.fixture
def filled(prepared):
    return prepared.fill(name="Ana", unsubscribe_url=UNSUB, web_url=WEB)


def visible_text(page: str) -> str:
    return " ".join(lxml.html.fromstring(page).text_content().split())


def test_every_section_is_in_the_html(filled, config):
    text = visible_text(filled.html)
    expected = [
        "Flip, then flop: what B2B marketers do now",  # subject as the page title
        "Sales and marketing keep reversing course. Why?",  # preheader
        "Hi Ana,",
        "A short intro before the first article.",
        "On this date in 1839",
        "The daguerreotype process was announced to the world.",
        "Theme song of the week",
        "“Learning to Fly” by Tom Petty",
        "A song about starting over",
        "The Flip and the Flop",
        "That’s the flip.",
        "Strategy is about making choices.",
        "— Michael Porter",
        "What’s in Your Junk Drawer?",
        "What the experts are saying",
        "The trap many people fall into",
        "— Clayton Christensen",
        "— Seth Godin",
        "As always, call me to brainstorm or just say hello!",
        "Looking forward,",
        "Dana Whitfield",
        "Principal, Northbeam Marketing",
        config.newsletter.postal_address,
        "You are receiving this because you subscribed to The Pipeline Weekly",
        "Unsubscribe",
        "View in your browser",
    ]
    missing = [piece for piece in expected if piece not in text]
    assert not missing
    tree = lxml.html.fromstring(filled.html)
    hrefs = {a.get("href") for a in tree.iter("a")}
    assert {UNSUB, WEB, "https://example.com/learning-to-fly", "https://example.com/story"} <= hrefs
    assert "https://example.com/christensen" in hrefs  # a quote's source link
    assert "mailto:dana@example.com" in hrefs


def test_minimal_issue_leaves_out_what_it_does_not_have(write_issue, config):
    page = prepare(load_issue(write_issue(MINIMAL_ISSUE, "2026-12-01-short.md")), config)
    text = visible_text(page.fill(name=None, unsubscribe_url=UNSUB, web_url=WEB).html)
    assert "Only Article" in text and "Hi there," in text
    for absent in ("On this date", "Theme song", "What the experts are saying"):
        assert absent not in text
    assert page.subject == "The Pipeline Weekly: Short One"


def test_css_is_inlined_and_media_queries_survive(filled):
    assert filled.html.startswith("<!doctype html>")  # standards mode, not quirks
    head = filled.html.split("<body", 1)[0].replace(" ", "")
    assert "@mediaonlyscreenand(min-width:480px)" in head  # MJML's own column rules
    assert "@mediaonlyscreenand(max-width:480px)" in head  # the template's phone rules
    assert "font-size:18px!important" in head
    # Rules that can be inlined were: a link's colour now sits on the element itself.
    story = next(a for a in lxml.html.fromstring(filled.html).iter("a") if "story" in a.get("href"))
    assert "color:#0b5cad" in story.get("style").replace(" ", "")
    assert ".prosep" not in head


def test_text_part_has_every_section_from_the_issue_structure(prepared, config):
    text = prepared.fill(name="Ana", unsubscribe_url=UNSUB, web_url=WEB).text
    for piece in [
        "THE PIPELINE WEEKLY",
        f"Read it in your browser: {WEB}",
        "Hi Ana,",
        "ON THIS DATE IN 1839",
        "Read more: https://en.wikipedia.org/wiki/Daguerreotype",
        "THEME SONG OF THE WEEK",
        "“Learning to Fly” by Tom Petty",
        "Listen: https://example.com/learning-to-fly",
        "THE FLIP AND THE FLOP\n=====================",
        "the whole story <https://example.com/story>",
        "  “Strategy is about making choices.”\n    — Michael Porter",
        "WHAT THE EXPERTS ARE SAYING",
        "— Clayton Christensen <https://example.com/christensen>",
        "As always, call me to brainstorm",
        "Looking forward,\nDana Whitfield",
        f"Unsubscribe: {UNSUB}",
        "Northbeam Marketing, 100 Example Street",
    ]:
        assert piece in text, piece
    assert "<" not in text.replace("<https://", "").replace("<mailto:", "")  # no markup
    assert max(len(line) for line in text.splitlines() if "://" not in line) <= 72


def test_name_is_escaped_in_html_and_kept_in_text(prepared):
    out = prepared.fill(name='Bo <b>"Bold"</b>', unsubscribe_url=UNSUB, web_url=WEB)
    assert "Hi Bo &lt;b&gt;&quot;Bold&quot;&lt;/b&gt;," in out.html
    assert 'Hi Bo <b>"Bold"</b>,' in out.text


def test_fill_uses_the_fallback_greeting_and_leaves_no_marker(prepared):
    out = prepared.fill(name=None, unsubscribe_url=UNSUB, web_url=WEB)
    assert "Hi there," in out.html and "Hi there," in out.text
    assert "nlslot" not in out.html + out.text
    assert out.html.count(UNSUB) == 1 and out.text.count(UNSUB) == 1
    assert out.html.count(WEB) == 2  # top link and footer link


def test_two_recipients_get_their_own_values(prepared):
    one = prepared.fill(name="Ana", unsubscribe_url=UNSUB + "a", web_url=WEB)
    two = prepared.fill(name="Ben", unsubscribe_url=UNSUB + "b", web_url=WEB)
    assert "Hi Ana," in one.html and "Hi Ben," in two.html and "Ana" not in two.html
    assert one.html.replace("Ana", "Ben").replace(UNSUB + "a", UNSUB + "b") == two.html


def test_braces_in_the_issue_survive_slot_filling(write_issue, config):
    issue = MINIMAL_ISSUE.replace("Just one article", "Use {name} and {{ x }} and [[nlslot:name]]")
    out = prepare(load_issue(write_issue(issue)), config).fill(
        name="Ana", unsubscribe_url=UNSUB, web_url=WEB
    )
    assert "Use {name} and {{ x }} and [[nlslot:name]]" in out.text


def test_script_in_a_field_is_escaped_everywhere(write_issue, config):
    issue = FULL_ISSUE.replace("title: B2B Flip-flop", 'title: "<script>alert(1)</script>"')
    issue = issue.replace("author: Seth Godin", "author: <img src=x onerror=alert(2)>")
    page = prepare(load_issue(write_issue(issue)), config)
    out = page.fill(name="<script>alert(3)</script>", unsubscribe_url=UNSUB, web_url=WEB)
    assert "<script" not in out.html.lower()
    assert "onerror" not in "".join(
        el.get("onerror") or "" for el in lxml.html.fromstring(out.html).iter()
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html
    assert "&lt;img src=x onerror=alert(2)&gt;" in out.html


def test_html_is_under_gmail_clipping_limit(write_issue, config):
    # Gmail hides everything past 102 KB, footer and unsubscribe link included.
    # The markup each article adds must leave room for a long issue: every
    # front-matter section and ten articles of some 330 words each (five times
    # the reference issue) must still arrive whole.
    paragraph = "Every January sales says the leads are not good enough. " * 6
    article = (
        "\n\n".join([paragraph] * 5) + "\n\n> Strategy is about making choices.\n— M. Porter\n"
    )
    body = "".join(f"\n## Article {n}\n\n{article}" for n in range(10))
    assert len((FULL_ISSUE + body).split()) > 3000
    out = prepare(load_issue(write_issue(FULL_ISSUE + body)), config).fill(
        name="Ana", unsubscribe_url=UNSUB, web_url=WEB
    )
    assert "Article 9" in visible_text(out.html)
    assert len(out.html.encode()) < 102 * 1024


def test_template_syntax_error_names_template_and_line(folder, write_issue, config):
    (folder / "templates" / "sections" / "closing.mjml.j2").write_text(
        "<mj-section>\n<mj-column>\n<mj-text>{{ issue.closing }</mj-text>\n</mj-column>\n"
    )
    with pytest.raises(TemplateError) as caught:
        prepare(load_issue(write_issue(FULL_ISSUE)), config)
    message = str(caught.value)
    assert re.search(r"templates/sections/closing\.mjml\.j2:3: template syntax error", message)
    assert "fix the template, or delete it to use the built-in one" in message


def test_template_runtime_error_names_template_and_line(folder, write_issue, config):
    (folder / "templates" / "sections" / "closing.mjml.j2").write_text(
        "<mj-section>\n<mj-column>\n<mj-text>{{ issue.clossing }}</mj-text>\n"
        "</mj-column>\n</mj-section>\n"
    )
    with pytest.raises(TemplateError) as caught:
        prepare(load_issue(write_issue(FULL_ISSUE)), config)
    assert re.search(r"closing\.mjml\.j2:3: template error: .*clossing", str(caught.value))


def test_deleted_template_falls_back_to_the_built_in_one(folder, write_issue, config):
    (folder / "templates" / "sections" / "closing.mjml.j2").unlink()
    out = prepare(load_issue(write_issue(FULL_ISSUE)), config).fill(
        name="Ana", unsubscribe_url=UNSUB, web_url=WEB
    )
    assert "As always, call me to brainstorm" in out.html


def test_mjml_error_is_reported_not_raised_raw(folder, write_issue, config):
    (folder / "templates" / "sections" / "closing.mjml.j2").write_text("<mj-section><mj-column>")
    with pytest.raises(TemplateError) as caught:
        prepare(load_issue(write_issue(FULL_ISSUE)), config)
    assert "MJML could not compile" in str(caught.value)


def test_web_fonts_do_not_make_rendering_fetch_anything(folder, write_issue, config, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"rendering tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    template = folder / "templates" / "issue.mjml.j2"
    template.write_text(
        template.read_text()
        .replace(
            "<mj-head>",
            '<mj-head>\n<mj-font name="Lato" href="' + FONTS + '" />',
        )
        .replace("font-family=\"Georgia, 'Times New Roman', serif\"", 'font-family="Lato, serif"')
    )
    out = prepare(load_issue(write_issue(FULL_ISSUE)), config).fill(
        name="Ana", unsubscribe_url=UNSUB, web_url=WEB
    )
    assert "fonts.googleapis.com" in out.html  # the link stays for clients that load it
    assert "Hi Ana," in out.html


def test_template_edited_between_renders_is_picked_up(folder, write_issue, config):
    path = write_issue(FULL_ISSUE)
    prepare(load_issue(path), config)
    closing = folder / "templates" / "sections" / "closing.mjml.j2"
    closing.write_text(
        "<mj-section><mj-column><mj-text>Edited sign-off</mj-text></mj-column></mj-section>\n"
    )
    out = prepare(load_issue(path), config).fill(name="Ana", unsubscribe_url=UNSUB, web_url=WEB)
    assert "Edited sign-off" in out.html


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "{{ slot('email') }}",
            "unknown slot 'email'; expected one of name, full_name, unsubscribe_url, web_url",
        ),
        ("{{ 1 / 0 }}", "division by zero"),
    ],
)
def test_any_failure_inside_a_template_is_a_template_error(
    folder, write_issue, config, template, expected
):
    (folder / "templates" / "sections" / "closing.mjml.j2").write_text(f"<mj-raw>\n{template}\n")
    with pytest.raises(TemplateError) as caught:
        prepare(load_issue(write_issue(FULL_ISSUE)), config)
    assert re.search(r"closing\.mjml\.j2:2: template error: ", str(caught.value))
    assert expected in str(caught.value)


def test_rules_after_a_media_block_in_the_same_style_are_still_inlined(folder, write_issue, config):
    # @media-only style blocks are left to stay in the head as written; one that also
    # holds ordinary rules must still have those inlined.
    template = folder / "templates" / "issue.mjml.j2"
    template.write_text(
        template.read_text().replace(
            "</mj-head>",
            "<mj-style>@media print { .prose p { color: #000000; } }\n"
            ".prose p { letter-spacing: 0.2px; }</mj-style>\n</mj-head>",
        )
    )
    out = prepare(load_issue(write_issue(FULL_ISSUE)), config).fill(
        name="Ana", unsubscribe_url=UNSUB, web_url=WEB
    )
    hello = next(
        p for p in lxml.html.fromstring(out.html).iter("p") if "Hi Ana" in p.text_content()
    )
    assert "letter-spacing:0.2px" in hello.get("style").replace(" ", "")
    assert "@media print" in out.html.split("<body", 1)[0]
