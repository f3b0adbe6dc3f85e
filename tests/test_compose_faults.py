"""Hostile or broken issue files, as found when the product was attacked: each must
give `FILE:LINE: what is wrong, and what is expected`, exit 1, no traceback, and
must fail fast instead of eating memory or the stack."""

from __future__ import annotations

import itertools
import time

import pytest

from newsletter.compose.issue import IssueError, load_issue

SHORT = "2026-12-01-short.md"
HEAD = "---\ntitle: Short One\ndate: 2026-12-01\n"
BODY = "---\n\n## Only Article\n\nJust one article this week.\n"


def billion_laughs() -> str:
    """Nine levels of nine aliases: 387 million strings once expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghi"
    for previous, current in itertools.pairwise(names):
        lines.append(f"{current}: &{current} [" + ",".join([f"*{previous}"] * 9) + "]")
    return "---\n" + "\n".join(lines) + "\ntitle: T\ndate: 2026-12-01\n" + BODY


def test_billion_laughs_is_refused_before_it_expands(write_issue, cli):
    path = write_issue(billion_laughs(), SHORT)
    start = time.perf_counter()
    with pytest.raises(IssueError) as caught:
        load_issue(path)
    assert time.perf_counter() - start < 0.5
    assert str(caught.value).startswith(f"{path}:2: front matter: ")
    assert "YAML anchor" in str(caught.value)

    result = cli("check", f"issues/{SHORT}")
    assert result.exit_code == 1
    assert f"issues/{SHORT}:2: error: front matter: a value starting with '&'" in result.output


FAULTS = [
    pytest.param(
        HEAD + "closing: a\x00b\n" + BODY,
        ":4: contains the control character U+0000 (NUL); delete it",
        id="nul-in-front-matter",
    ),
    pytest.param(
        HEAD + "closing: |\n  Bye\x07\n" + BODY,
        ":5: contains the control character U+0007 (BEL); delete it",
        id="bel-in-front-matter-block",
    ),
    pytest.param(
        HEAD + BODY + "\nSee \x1b[31mred\x1b[0m text.\n",
        ":10: contains the control character U+001B (ESC); delete it",
        id="esc-in-body",
    ),
    pytest.param(
        HEAD + BODY + "\nA bell\x07 here.\n",
        ":10: contains the control character U+0007 (BEL); delete it",
        id="bel-in-body",
    ),
    pytest.param(
        HEAD + BODY + "\nA C1 control\x9b here.\n",
        ":10: contains the control character U+009B (a C1 control character); delete it",
        id="c1-in-body",
    ),
    pytest.param(
        HEAD + 'closing: "red \\e[31m"\n' + BODY,
        ":4: closing: contains the control character U+001B (ESC); delete it",
        id="esc-written-as-a-yaml-escape",
    ),
    pytest.param(
        HEAD + "theme_song:\n  title: S\n  artist: A\n  url: https://example.com/s\n"
        '  note: "\\a"\n' + BODY,
        ":8: theme_song.note: contains the control character U+0007 (BEL); delete it",
        id="bel-written-as-a-yaml-escape",
    ),
    pytest.param(
        HEAD + "closing: a\ufffeb\n" + BODY,
        ":4: contains the character U+FFFE (a Unicode noncharacter); delete it",
        id="noncharacter-in-front-matter",
    ),
    pytest.param(
        HEAD + BODY + "\nA\uffffB\n",
        ":10: contains the character U+FFFF (a Unicode noncharacter); delete it",
        id="noncharacter-in-body",
    ),
    pytest.param(
        HEAD + BODY + "\nA\u202eB\n",
        ":10: contains the control character U+202E (RIGHT-TO-LEFT OVERRIDE); delete it",
        id="bidi-override-in-body",
    ),
    pytest.param(
        HEAD.encode() + b"closing: caf\xe9\n" + BODY.encode(),
        ":4: is not UTF-8 text (byte 0xe9); save the file as UTF-8",
        id="latin-1-byte",
    ),
    pytest.param(
        HEAD + "closing: " + "[" * 10_000 + "\n" + BODY,
        ":4: front matter: is nested more than 20 levels deep",
        id="ten-thousand-open-brackets",
    ),
    pytest.param(
        HEAD + "closing:\n" + "".join("  " * i + "-\n" for i in range(1, 400)) + BODY,
        ":24: front matter: is nested more than 20 levels deep",
        id="deep-block-lists",
    ),
    pytest.param(
        HEAD + "closing: *Important*\n" + BODY,
        ":4: front matter: a value starting with '*' is a YAML alias, which issues do not use; "
        "put the text in quotes, or write the value out in full",
        id="alias-looks-like-emphasis",
    ),
    pytest.param(
        HEAD + "closing: *bold\n" + BODY,
        ":4: front matter: a value starting with '*' is a YAML alias, which issues do not use; "
        "put the text in quotes, or write the value out in full",
        id="undefined-alias",
    ),
    pytest.param(
        "---\ntitle: &t Short One\nsubject: *t\ndate: 2026-12-01\n" + BODY,
        ":2: front matter: a value starting with '&' is a YAML anchor, which issues do not use; "
        "put the text in quotes, or write the value out in full",
        id="anchor",
    ),
]


@pytest.mark.parametrize(("text", "expected"), FAULTS)
def test_bad_file_is_a_one_line_error_from_check_preview_and_send(write_issue, cli, text, expected):
    write_issue(text, SHORT)
    where = f"issues/{SHORT}"
    checked = cli("check", where)
    assert checked.exit_code == 1, checked.output
    location, _, message = expected[1:].partition(": ")
    assert f"{where}:{location}: error: {message}" in checked.output
    assert "Traceback" not in checked.output

    previewed = cli("preview", where)
    assert previewed.exit_code == 1, previewed.output
    assert previewed.stderr.startswith(f"error: {where}{expected}")
    assert "MJML" not in previewed.output

    sent = cli("send", where, "--dry-run")
    assert sent.exit_code == 1, sent.output
    # (after the warnings about the demo identity the test folder still has)
    assert f"\nerror: {where}{expected}" in "\n" + sent.stderr


@pytest.mark.parametrize("character", ["\t", "\r"])
def test_tab_and_carriage_return_in_the_body_are_fine(write_issue, character):
    path = write_issue(HEAD + BODY + f"\nA{character}line.\n", SHORT)
    assert load_issue(path).body.articles[0].heading == "Only Article"


def test_nesting_within_the_limit_is_still_read(write_issue):
    # Quotes are the deepest real structure (fields → list → item → field); a
    # generous cap must leave room for it.
    path = write_issue(HEAD + "quotes:\n  - text: Wise.\n    author: Someone\n" + BODY, SHORT)
    assert load_issue(path).meta.quotes[0].author == "Someone"
