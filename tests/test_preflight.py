"""`newsletter check`'s preflight: what would go wrong in an inbox, found before sending."""

from __future__ import annotations

import pytest
from conftest import FULL_ISSUE, MINIMAL_ISSUE

from newsletter.compose.issue import load_issue
from newsletter.compose.preflight import check_file
from newsletter.compose.render import prepare, public_fill
from newsletter.config import load_config

SHORT = "2026-12-01-short-one.md"


def found(path, config, level=None) -> list[str]:
    return [str(f) for f in check_file(path, config) if level in (None, f.level)]


def test_good_issues_have_no_findings(write_issue, config, folder):
    assert found(write_issue(FULL_ISSUE), config) == []
    example = next((folder / "issues").glob("*funnel.md"))
    assert found(example, config) == []


def test_leftover_todo_is_an_error_with_its_line(write_issue, config):
    path = write_issue(MINIMAL_ISSUE.replace("Just one article", "TODO finish this"), SHORT)
    assert found(path, config) == [
        f"{path}:8: error: still has a TODO placeholder; replace it with your text, or delete it"
    ]


def test_fresh_scaffold_reports_schema_and_todo_lines_together(cli, folder, config):
    cli("new", "--date", "2026-12-08")
    path = folder / "issues" / "2026-12-08.md"
    findings = found(path, config, "error")
    assert any(
        ":10: error: on_this_date.year: still holds the scaffold's TODO" in f for f in findings
    )
    # Each front-matter TODO names its field, as every other finding does.
    assert any(":8: error: preheader: still has a TODO placeholder" in f for f in findings)
    assert len(findings) > 10


def test_link_that_cannot_work_in_email_is_an_error(write_issue, config):
    path = write_issue(
        MINIMAL_ISSUE.replace("Just one article", "See [the deck](/slides/q4)"), SHORT
    )
    assert found(path, config) == [
        f"{path}:8: error: link '/slides/q4' is not a web or mailto link, so it cannot work "
        "in an email; use a full https:// address"
    ]


def test_image_without_alt_text_is_a_warning(write_issue, config):
    path = write_issue(MINIMAL_ISSUE + "\n![](https://example.com/chart.png)\n", SHORT)
    assert found(path, config) == [
        f"{path}:10: warning: image 'https://example.com/chart.png' has no alt text, so screen "
        "readers and image-blocking clients show nothing; write ![what it shows](url)"
    ]


def test_image_with_relative_path_is_an_error(write_issue, config):
    path = write_issue(MINIMAL_ISSUE + "\n![A chart](chart.png)\n", SHORT)
    assert found(path, config, "error") == [
        f"{path}:10: error: image 'chart.png' is not a full web address, so readers cannot "
        "load it; use https://…"
    ]


def test_empty_article_and_empty_closing_are_warnings(write_issue, config):
    text = MINIMAL_ISSUE.replace("title: Short One", 'title: Short One\nclosing: ""')
    path = write_issue(text + "\n## Coming soon\n", SHORT)
    assert found(path, config) == [
        f"{path}:3: warning: closing: is empty; write a closing note, or delete the field",
        f"{path}:11: warning: article 'Coming soon' has no text; write it, or delete the heading",
    ]


def test_html_over_gmail_clip_limit_is_an_error(write_issue, config):
    paragraphs = "\n\n".join(f"Paragraph {i} " + "words " * 150 for i in range(130))
    path = write_issue(MINIMAL_ISSUE + "\n" + paragraphs + "\n", SHORT)
    (finding,) = found(path, config)
    assert finding.startswith(f"{path}: error: the HTML is ")
    assert "over Gmail's 102 KB limit" in finding


def test_footer_without_unsubscribe_or_address_is_an_error(folder, write_issue, config):
    (folder / "templates" / "sections" / "footer.mjml.j2").write_text(
        "<mj-section><mj-column><mj-text>Bye</mj-text></mj-column></mj-section>\n"
    )
    path = write_issue(MINIMAL_ISSUE, SHORT)
    findings = found(path, config)
    assert f"{path}: error: the HTML part has no unsubscribe link; put " in findings[0]
    assert any("the HTML part does not show the postal address" in f for f in findings)
    # The text part keeps its own footer, so only the HTML is reported.
    assert not any("plain-text" in f for f in findings)


def test_date_that_disagrees_with_file_name_is_a_warning(write_issue, config):
    path = write_issue(MINIMAL_ISSUE, "2026-12-08-short-one.md")
    assert found(path, config) == [
        f"{path}:3: warning: date: is 2026-12-01 but the file name says 2026-12-08; make them "
        "match so the archive sorts right"
    ]


def test_todo_in_an_article_heading_is_found(write_issue, config):
    path = write_issue(MINIMAL_ISSUE.replace("## Only Article", "## TODO First heading"), SHORT)
    assert found(path, config) == [
        f"{path}:6: error: still has a TODO placeholder; replace it with your text, or delete it"
    ]


def test_todo_in_a_yaml_comment_is_guidance_not_content(write_issue, config):
    text = MINIMAL_ISSUE.replace("title: Short One", "# TODO-style guidance\ntitle: Short One")
    assert found(write_issue(text, SHORT), config) == []


def test_each_link_and_image_is_reported_on_its_own_line(write_issue, config):
    body = "\n\nSee [deck](t) and more.\n\n![](https://example.com/a.png)\n\n![](https://example.com/a.png)\n"
    path = write_issue(MINIMAL_ISSUE + body, SHORT)
    wheres = [f.split(": ")[0] for f in found(path, config)]
    assert wheres == [f"{path}:11", f"{path}:13", f"{path}:15"]


def test_date_warning_points_at_the_date_line(write_issue, config):
    text = MINIMAL_ISSUE.replace(
        "title: Short One", "title: Short One\non_this_date:\n  year: 1900\n  text: x"
    )
    path = write_issue(text, "2026-12-08-short-one.md")
    (finding,) = found(path, config)
    assert finding.startswith(f"{path}:6: warning: date:")


def test_postal_address_with_apostrophe_or_lines_is_recognised(folder, write_issue):
    toml = folder / "newsletter.toml"
    text = toml.read_text()
    start = text.index("postal_address =")
    end = text.index("\n", start)
    toml.write_text(
        text[:start] + 'postal_address = """100 O\'Neil Street\n  Springfield"""' + text[end:]
    )
    config = load_config(toml, environ={})
    assert found(write_issue(MINIMAL_ISSUE, SHORT), config) == []


def test_a_folder_given_as_issue_is_an_error_not_a_crash(folder, config):
    (finding,) = found(folder / "issues", config)
    assert "is a folder" in finding


def issue_with_html_of(write_issue, config, size: int):
    """An issue whose rendered HTML is exactly `size` bytes: one paragraph of
    plain ASCII words adds exactly its length to the page."""

    def write(length: int):
        padding = ("lorem " * length)[: length - 1] + "."
        return write_issue(MINIMAL_ISSUE + "\n" + padding + "\n", SHORT)

    def html_size(path) -> int:
        return len(public_fill(prepare(load_issue(path), config), config).html.encode())

    base = html_size(write(1000))
    path = write(1000 + size - base)
    assert html_size(path) == size
    return path


def test_html_near_gmail_clip_limit_is_a_warning_and_over_it_an_error(write_issue, config):
    limit = 102 * 1024
    threshold = int(limit * 0.85)  # 88,780.8 bytes: warn from 88,781 on
    for size, expected in [
        (threshold, []),
        (threshold + 1, ["warning: the HTML is 87 KB, close to Gmail's 102 KB clipping limit"]),
        (limit, ["warning: the HTML is 102 KB, close to Gmail's 102 KB clipping limit"]),
        (limit + 1, ["error: the HTML is 102 KB, over Gmail's 102 KB limit: Gmail would clip"]),
    ]:
        path = issue_with_html_of(write_issue, config, size)
        findings = found(path, config)
        assert len(findings) == len(expected), (size, findings)
        for finding, start in zip(findings, expected, strict=True):
            assert finding.startswith(f"{path}: {start}"), (size, finding)


def test_script_and_data_links_are_errors_on_their_lines(write_issue, config):
    # Markdown refuses to make links of these and shows their raw text instead.
    body = (
        "\n[Click](javascript:alert(1)) here.\n\n"
        "See <javascript:void(0)> too.\n\n"
        "[Doc](data:text/html;base64,PGgxPg==)\n\n"
        "![Chart](data:image/png;base64,iVBORw0KGgo)\n"
    )
    path = write_issue(MINIMAL_ISSUE + body, SHORT)
    assert found(path, config) == [
        f"{path}:10: error: link 'javascript:alert(1)' runs a script, which mail clients block "
        "and spam filters count against you; link to a web page (https://…) instead",
        f"{path}:12: error: link 'javascript:void(0)' runs a script, which mail clients block "
        "and spam filters count against you; link to a web page (https://…) instead",
        f"{path}:14: error: link 'data:text/html;base64,PGgxPg==' is a data: URL, which mail "
        "clients block or strip; put the content on the web and use its https:// address",
        f"{path}:16: error: image 'data:image/png;base64,iVBORw0KGgo' is a data: URL, which "
        "mail clients block or strip; put the content on the web and use its https:// address",
    ]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://localhost:8000/draft", "localhost (this computer)"),
        ("https://app.localhost/x", "app.localhost (this computer)"),
        ("http://127.0.0.1/x", "127.0.0.1 (this computer)"),
        ("http://127.8.9.10:5000/x", "127.8.9.10 (this computer)"),
        ("http://[::1]:8080/x", "::1 (this computer)"),
        ("http://0.0.0.0:8000/", "0.0.0.0 (this computer)"),
        ("https://printer.local/status", "printer.local (a name on your local network)"),
        ("https://NAS.Local./share", "nas.local (a name on your local network)"),
    ],
)
def test_links_to_this_computer_or_the_local_network_are_errors(write_issue, config, url, host):
    path = write_issue(MINIMAL_ISSUE + f"\nSee [the draft]({url}).\n", SHORT)
    assert found(path, config) == [
        f"{path}:10: error: link {url!r} points at {host}, which readers cannot reach; "
        "use its public https:// address"
    ]


def test_image_on_localhost_is_an_error_and_public_hosts_are_fine(write_issue, config):
    body = (
        "\n![A chart](http://localhost/chart.png)\n\n"
        "[Fine](https://localhost.example.com/) [also](https://127.example.com/)"
        " [and](https://locale.example/) [ip](https://93.184.215.14/)\n"
    )
    path = write_issue(MINIMAL_ISSUE + body, SHORT)
    assert found(path, config) == [
        f"{path}:10: error: image 'http://localhost/chart.png' points at localhost (this "
        "computer), which readers cannot reach; use its public https:// address"
    ]


def test_own_site_on_localhost_is_left_to_the_configuration_check(folder, write_issue):
    # Serving the site locally puts base_url on localhost: the footer's links follow it,
    # and the base_url check (not each link) tells the editor about it.
    toml = folder / "newsletter.toml"
    toml.write_text(
        toml.read_text().replace(
            'base_url = "https://news.example.com"', 'base_url = "http://localhost:8000"'
        )
    )
    config = load_config(toml, environ={})
    path = write_issue(MINIMAL_ISSUE + "\n[Other](http://localhost:9000/x)\n", SHORT)
    assert found(path, config) == [
        f"{path}:10: error: link 'http://localhost:9000/x' points at localhost (this computer), "
        "which readers cannot reach; use its public https:// address"
    ]
