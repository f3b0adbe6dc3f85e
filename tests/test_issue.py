"""Loading an issue file: the schema, and every way a file can be wrong.

Each bad input must give `FILE:LINE: field: what is wrong; what is expected`.
"""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import FULL_ISSUE, MINIMAL_ISSUE

from newsletter.compose.content import Prose, Quote
from newsletter.compose.issue import IssueError, load_issue


def error_of(path) -> IssueError:
    with pytest.raises(IssueError) as caught:
        load_issue(path)
    return caught.value


def test_full_issue_loads_every_section(write_issue):
    issue = load_issue(write_issue(FULL_ISSUE))
    meta = issue.meta
    assert issue.slug == "2026-11-24-b2b-flip-flop"
    assert meta.title == "B2B Flip-flop"
    assert meta.date == dt.date(2026, 11, 24)
    assert meta.on_this_date.year == 1839
    assert meta.theme_song.artist == "Tom Petty"
    assert [q.author for q in meta.quotes] == ["Clayton Christensen", "Seth Godin"]
    assert meta.quotes[1].source is None
    assert meta.closing.startswith("As always")
    assert [a.heading for a in issue.body.articles] == [
        "The Flip and the Flop",
        "What’s in Your Junk Drawer?",
    ]
    first = issue.body.articles[0]
    assert isinstance(first.blocks[0], Prose)
    assert first.blocks[1] == Quote(
        html=first.blocks[1].html, text="Strategy is about making choices.", author="Michael Porter"
    )
    assert "A short intro" in issue.body.intro[0].text


def test_minimal_issue_leaves_optional_sections_out(write_issue):
    meta = load_issue(write_issue(MINIMAL_ISSUE, "2026-12-01-short-one.md")).meta
    assert meta.on_this_date is None and meta.theme_song is None
    assert meta.quotes == [] and meta.closing is None and meta.subject is None


def test_windows_line_endings_and_bom_are_accepted(write_issue):
    path = write_issue(("\ufeff" + MINIMAL_ISSUE).replace("\n", "\r\n").encode())
    assert load_issue(path).meta.title == "Short One"


BAD_INPUTS = [
    pytest.param(
        "---\ntitle: [unclosed\ndate: 2026-11-24\n---\n## A\ntext\n",
        ":3: front matter: YAML syntax error",
        id="broken-yaml",
    ),
    pytest.param(
        "---\ndate: 2026-11-24\n---\n## A\ntext\n",
        ":2: title: is missing; add it",
        id="missing-title",
    ),
    pytest.param(
        "---\ntitle: T\ndate: 2026-13-01\n---\n## A\ntext\n",
        ":3: date: '2026-13-01' is not a date; expected a date like 2026-11-30",
        id="bad-date",
    ),
    pytest.param(
        "---\ntitle: T\ndate: 2026-11-24\ntheme_song:\n  title: S\n  artist: A\n"
        "  url: htp:/nowhere\n---\n## A\ntext\n",
        ":7: theme_song.url: 'htp:/nowhere' is not a web address; expected a full URL like https://",
        id="bad-url",
    ),
    pytest.param(
        "---\ntitle: T\ndate: 2026-11-24\ntheme_sng:\n  title: S\n---\n## A\ntext\n",
        ":4: theme_sng: is not a known field (did you mean 'theme_song'?); "
        "remove it or fix its spelling",
        id="unknown-key",
    ),
    pytest.param(
        "---\ntitle: T\ndate: 2026-11-24\nquotes:\n  - text: ''\n    author: Seth Godin\n"
        "---\n## A\ntext\n",
        ":5: quotes[1].text: is empty; expected some text",
        id="empty-quote",
    ),
    pytest.param(
        "---\ntitle: T\ndate: 2026-11-24\nquotes:\n  - text: Something wise.\n---\n## A\ntext\n",
        ":5: quotes[1].author: is missing; add it",
        id="quote-without-author",
    ),
    pytest.param(
        b"---\ntitle: caf\xe9\ndate: 2026-11-24\n---\n## A\ntext\n",
        ":2: is not UTF-8 text (byte 0xe9); save the file as UTF-8",
        id="not-utf8",
    ),
    pytest.param(
        "",
        ":1: the file is empty; expected front matter between two '---' lines",
        id="empty-file",
    ),
    pytest.param(
        "---\ntitle: T\ndate: 2026-11-24\n---\n" + "word " * 1_000_000,
        ": is 5.0 MB; an issue must be under 1 MB",
        id="five-megabytes",
    ),
    pytest.param(
        "title: T\ndate: 2026-11-24\n\n## A\ntext\n",
        ":1: front matter: the file must start with a '---' line",
        id="no-front-matter",
    ),
    pytest.param(
        "---\ntitle: T\ndate: 2026-11-24\n## A\ntext\n",
        ":1: front matter: no closing '---' line",
        id="unclosed-front-matter",
    ),
    pytest.param(
        "---\ntitle: T\ndate: 2026-11-24\n---\nJust an intro and no article.\n",
        ":5: body: has no articles; expected at least one '## Heading'",
        id="no-articles",
    ),
    pytest.param(
        "---\ntitle: T\ndate: 2026-11-24\n---\n\n# Big heading\n\n## A\ntext\n",
        ":6: body: a '#' heading; the title comes from the front matter",
        id="h1-in-body",
    ),
    pytest.param(
        '---\ntitle: T\ndate: 2026-11-24\nsubject: "Hi\\r\\nBcc: victim@example.com"\n'
        "---\n## A\ntext\n",
        ":4: subject: contains a line break or control character; expected a single line of text",
        id="crlf-in-subject",
    ),
    pytest.param(
        "---\ntitle: T\ntitle: U\ndate: 2026-11-24\n---\n## A\ntext\n",
        ":3: title: is given twice (first on line 2); keep one",
        id="duplicate-key",
    ),
    pytest.param(
        "---\ntitle: T\ndate: 2026-11-24\non_this_date:\n  year: sometime\n  text: x\n"
        "---\n## A\ntext\n",
        ":5: on_this_date.year: 'sometime' is not a number; expected a number like 1839",
        id="year-not-a-number",
    ),
    pytest.param(
        "---\n- a list\n- not fields\n---\n## A\ntext\n",
        ":2: front matter: is not a set of fields",
        id="front-matter-is-a-list",
    ),
    pytest.param(
        "---\ntitle: T\ndate: 2026-11-24\nsubject: We are #1 again\n---\n## A\ntext\n",
        ":4: subject: the text after ' #' would be read as a YAML comment and dropped; "
        "put the whole value in quotes",
        id="hash-cuts-value",
    ),
    pytest.param(
        '---\ntitle: "Unclosed\ndate: 2026-11-24\n---\n## A\ntext\n',
        ":2: front matter: YAML syntax error",
        id="unclosed-quote-line",
    ),
    pytest.param(
        '---\ntitle: T\ndate: 2026-11-24\nsubject: ""\n---\n## A\ntext\n',
        ":4: subject: is empty; expected some text",
        id="empty-optional-subject",
    ),
    pytest.param(
        "---\ntitle: yes\ndate: 2026-11-24\n---\n## A\ntext\n",
        ":2: title: is read as yes/no (true/false); put the text in quotes",
        id="title-yes",
    ),
    pytest.param(
        "---\ntitle:\ndate: 2026-11-24\n---\n## A\ntext\n",
        ":2: title: is empty; expected a value (or delete the line)",
        id="title-empty",
    ),
    pytest.param(
        '---\ntitle: T\ndate: 2026-11-24\npreheader: "p\\u2028Bcc: a@example.com"\n---\n## A\nt\n',
        ":4: preheader: contains a line break or control character",
        id="unicode-line-separator",
    ),
    pytest.param(
        "---\ntitle: T\ndate: 2026-11-24\nquotes:\n  - text: x\n    author: Y\n    autor: Z\n"
        "---\n## A\ntext\n",
        ":7: quotes[1].autor: is not a known field (did you mean 'author'?)",
        id="typo-suggests-sibling",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_INPUTS)
def test_bad_input_names_file_line_and_fix(write_issue, text, expected):
    path = write_issue(text)
    message = str(error_of(path))
    assert message.startswith(str(path)), message
    assert expected in message, message


def test_every_schema_mistake_is_reported_at_once(write_issue):
    path = write_issue("---\ntitle: ''\ndate: nope\nquotes:\n  - author: X\n---\n## A\nt\n")
    lines = error_of(path).lines()
    assert [line.split(": ")[1] for line in lines] == ["title", "date", "quotes[1].text"]
    assert [line.split(":")[1] for line in lines] == ["2", "3", "5"]


def test_missing_file_says_how_to_start_one(tmp_path):
    message = str(error_of(tmp_path / "issues" / "nope.md"))
    assert "no such issue file" in message and "newsletter new" in message


def test_file_name_must_make_a_clean_web_address(write_issue):
    path = write_issue(MINIMAL_ISSUE, "My Issue.md")
    assert "rename it to lowercase letters, digits and hyphens" in str(error_of(path))


def test_real_comment_after_a_value_is_fine(write_issue):
    path = write_issue("---\ntitle: T  # working title\ndate: 2026-11-24\n---\n## A\ntext\n")
    assert load_issue(path).meta.title == "T"


def test_a_folder_is_not_an_issue(folder):
    message = str(error_of(folder / "issues"))
    assert "is a folder; name an issue file inside it" in message
