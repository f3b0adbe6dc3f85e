"""Markdown prose: articles, expert quotes inside articles, and the text rendering."""

from __future__ import annotations

import pytest

from newsletter.compose.content import ContentError, Prose, Quote, markdown_block, parse_body


def only_quote(markdown: str) -> Quote:
    (article,) = parse_body("## A\n\n" + markdown).articles
    quotes = [b for b in article.blocks if isinstance(b, Quote)]
    assert len(quotes) == 1, article.blocks
    return quotes[0]


@pytest.mark.parametrize(
    "markdown",
    [
        "> Be remarkable.\n— Seth Godin\n",  # attribution as the quote's lazy last line
        "> Be remarkable.\n>\n> — Seth Godin\n",  # as the quote's own last paragraph
        "> Be remarkable.\n\n— Seth Godin\n",  # as a paragraph right after the quote
        "> Be remarkable.\n-- Seth Godin\n",  # ASCII double hyphen
    ],
)
def test_blockquote_with_attribution_becomes_an_expert_quote(markdown):
    quote = only_quote(markdown)
    assert quote.author == "Seth Godin"
    assert quote.text == "Be remarkable."
    assert "Seth Godin" not in quote.html


def test_attribution_link_becomes_the_quote_source():
    quote = only_quote("> Be remarkable.\n— [Seth Godin](https://seths.blog/)\n")
    assert (quote.author, quote.source) == ("Seth Godin", "https://seths.blog/")


def test_blockquote_without_attribution_stays_prose():
    (article,) = parse_body("## A\n\n> Just a quote.\n\nMore text.\n").articles
    assert all(isinstance(b, Prose) for b in article.blocks)
    assert "<blockquote>" in article.blocks[0].html


def test_articles_split_on_level_two_headings_with_their_lines():
    body = parse_body(
        "Intro.\n\n## One\n\nFirst.\n\n### Sub\n\nStill first.\n\n## Two\n\nSecond.\n"
    )
    assert [a.heading for a in body.articles] == ["One", "Two"]
    assert [a.line for a in body.articles] == [3, 11]
    assert "STILL FIRST" not in body.articles[0].blocks[0].text
    assert "SUB" in body.articles[0].blocks[0].text
    assert body.intro[0].text == "Intro."


def test_level_one_heading_is_refused_with_its_line():
    with pytest.raises(ContentError) as caught:
        parse_body("Intro\n\n# Wrong\n")
    assert caught.value.line == 3


def test_raw_html_in_markdown_is_escaped_not_passed_through():
    prose = markdown_block('Hello <script>alert("x")</script> <b onclick="x">b</b>')
    assert "<script>" not in prose.html and "<b " not in prose.html
    assert "&lt;script&gt;" in prose.html


def test_javascript_links_are_not_rendered_as_links():
    prose = markdown_block("[click](javascript:alert(1))")
    assert "href" not in prose.html


def test_text_shows_links_as_urls_and_wraps_without_breaking_them():
    url = "https://example.com/" + "a" * 80
    text = markdown_block(f"Read [the report]({url}) and tell me what you think of it, ok?").text
    assert f"the report <{url}>" in " ".join(text.split("\n"))
    assert url in text.split("\n")[1] or url in text.split("\n")[0]
    long_lines = [line for line in text.split("\n") if len(line) > 72]
    assert all(url in line for line in long_lines)


def test_text_of_lists_quotes_and_code():
    text = markdown_block("- one\n- two\n\n1. first\n2. second\n\n> quoted\n\n    code here\n").text
    assert text == "- one\n- two\n\n1. first\n2. second\n\n> quoted\n\n    code here"


def test_mailto_link_text_is_not_repeated():
    text = markdown_block("Write to [ed@example.com](mailto:ed@example.com).").text
    assert text == "Write to ed@example.com."


def test_empty_article_is_flagged_empty():
    body = parse_body("## Nothing here\n\n## Something\n\ntext\n")
    assert [a.is_empty for a in body.articles] == [True, False]
