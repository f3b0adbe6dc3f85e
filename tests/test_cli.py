"""The editor's commands, through typer's CliRunner, in a real newsletter folder."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from conftest import FULL_ISSUE, MINIMAL_ISSUE

from newsletter.compose import scaffold
from newsletter.config import load_config
from newsletter.devtools import screenshots

EXAMPLE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"


COMMANDS = [
    "init", "new", "check", "preview", "send", "status", "sink", "serve", "form-snippet",
    "subscribers add", "subscribers remove", "subscribers list", "subscribers count",
    "subscribers import", "subscribers export", "subscribers show", "subscribers erase",
    "db upgrade",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(cli, command):
    result = cli(*command.split(), "--help")
    assert result.exit_code == 0
    assert "Example: newsletter " + command in " ".join(result.output.split())


def test_help_prints_the_example_unwrapped_so_it_can_be_copied():
    # A real process in a narrow terminal (CliRunner fixes the width at 80), where the
    # rest of the help wraps.
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "check", "--help"],
        env={**os.environ, "COLUMNS": "60"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "  --strict / --no-strict  Treat warnings as errors." in result.stdout.splitlines()
    assert f"  Example: newsletter check {EXAMPLE}" in result.stdout.splitlines()


def test_init_makes_a_folder_that_checks_clean(cli, tmp_path):
    result = cli("init", str(tmp_path / "fresh"))
    assert result.exit_code == 0, result.output
    assert "Next: edit" in result.output
    for name in ("newsletter.toml", "secrets.toml", ".gitignore", "templates/issue.mjml.j2"):
        assert (tmp_path / "fresh" / name).exists(), name
    assert (tmp_path / "fresh" / "secrets.toml").stat().st_mode & 0o077 == 0
    result = cli("check", "--config", str(tmp_path / "fresh" / "newsletter.toml"))
    assert result.exit_code == 0, result.output


def test_init_refuses_an_existing_newsletter(cli, folder):
    before = (folder / "newsletter.toml").read_text()
    result = cli("init", str(folder))
    assert result.exit_code == 1
    assert "already exists; this folder is a newsletter already" in result.stderr
    assert (folder / "newsletter.toml").read_text() == before


def test_new_dates_the_next_publishing_day_and_stubs_every_section(cli, folder):
    result = cli("new", "--title", "Q4: the plan")
    assert result.exit_code == 0, result.output
    (path,) = [p for p in (folder / "issues").glob("*q4-the-plan.md")]
    date = dt.date.fromisoformat(path.name[:10])
    assert date.weekday() == 1 and date >= dt.date.today()  # config says tuesday
    text = path.read_text()
    for section in ("on_this_date:", "theme_song:", "quotes:", "closing:", "preheader:", "## "):
        assert section in text
    assert 'title: "Q4: the plan"' in text
    assert f"Fill in the TODOs, then: newsletter check issues/{path.name}" in result.output


def test_new_refuses_to_overwrite(cli, folder):
    assert cli("new", "--date", "2026-12-08").exit_code == 0
    path = folder / "issues" / "2026-12-08.md"
    path.write_text("my words")
    result = cli("new", "--date", "2026-12-08")
    assert result.exit_code == 1
    assert "2026-12-08.md: already exists; edit it, or pass --date or --title" in result.stderr
    assert path.read_text() == "my words"


@pytest.mark.parametrize("date", ["2026-13-45", "2026-02-30", "next tuesday"])
def test_new_rejects_a_bad_date(cli, folder, date):
    before = sorted((folder / "issues").iterdir())
    result = cli("new", "--date", date)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: --date: {date!r} is not a real date; expected YYYY-MM-DD, like 2026-12-01\n"
    )
    assert sorted((folder / "issues").iterdir()) == before


def test_next_issue_date_skips_weeks_that_have_an_issue(folder):
    config = load_config(folder / "newsletter.toml", environ={})
    sunday = dt.date(2026, 11, 22)
    assert scaffold.next_issue_date(config, sunday) == dt.date(2026, 12, 1)  # 11-24 is taken
    tuesday = dt.date(2026, 12, 1)
    assert scaffold.next_issue_date(config, tuesday) == tuesday


def test_check_passes_good_issues(cli, write_issue):
    write_issue(FULL_ISSUE)
    result = cli("check")
    assert result.exit_code == 0, result.output
    # The two warnings: the test folder keeps the demo's From and postal address.
    assert "Checked 2 issue(s): 0 error(s), 2 warning(s)." in result.output


def test_check_accepts_a_slug(cli):
    result = cli("check", "2026-11-24-survival-of-the-fittest-funnel")
    assert result.exit_code == 0, result.output
    assert f"{EXAMPLE}: ok" in result.output


def test_check_fails_on_errors_without_a_traceback(cli, write_issue):
    write_issue("---\ntitle: T\ndate: someday\n---\n## A\ntext\n")
    result = cli("check", "issues/2026-11-24-b2b-flip-flop.md")
    assert result.exit_code == 1
    assert (
        "issues/2026-11-24-b2b-flip-flop.md:3: error: date: 'someday' is not a date; "
        "expected a date like 2026-11-30" in result.output
    )


def test_warnings_alone_pass_unless_strict(cli, write_issue):
    write_issue(MINIMAL_ISSUE + "\n![](https://example.com/x.png)\n", "2026-12-01-short.md")
    result = cli("check", "issues/2026-12-01-short.md")
    assert result.exit_code == 0, result.output
    assert "warning: image 'https://example.com/x.png' has no alt text" in result.output
    assert cli("check", "--strict", "issues/2026-12-01-short.md").exit_code == 1


def test_check_of_a_missing_file(cli):
    result = cli("check", "issues/nope.md")
    assert result.exit_code == 1
    assert "issues/nope.md: error: no such issue file" in result.output


def test_bad_config_is_one_line_and_exit_1(cli, folder):
    toml = folder / "newsletter.toml"
    toml.write_text(toml.read_text().replace("port = 2525", 'port = "many"'))
    result = cli("check")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert "newsletter.toml:36: smtp.port: 'many' is not a number" in result.stderr


def test_template_error_reaches_the_editor_as_a_message(cli, folder):
    (folder / "templates" / "sections" / "footer.mjml.j2").write_text("{% for x in %}\n")
    result = cli("preview", EXAMPLE)
    assert result.exit_code == 1
    assert "templates/sections/footer.mjml.j2:1: template syntax error" in result.stderr


def test_preview_writes_html_and_text(cli, folder):
    result = cli("preview", EXAMPLE)
    assert result.exit_code == 0, result.output
    html = folder / "build" / "2026-11-24-survival-of-the-fittest-funnel.html"
    text = html.with_suffix(".txt")
    assert "HTML:  build/2026-11-24-survival-of-the-fittest-funnel.html" in result.output
    assert "Hi there," in html.read_text() and "Hi there," in text.read_text()
    assert "Unsubscribe: https://news.example.com/unsubscribe\n" in text.read_text()


def test_preview_to_another_folder_with_config_from_elsewhere(cli, folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    result = cli(
        "preview",
        str(folder / EXAMPLE),
        "--out",
        str(out),
        "--config",
        str(folder / "newsletter.toml"),
    )
    assert result.exit_code == 0, result.output
    assert (out / "2026-11-24-survival-of-the-fittest-funnel.txt").is_file()


def test_screenshots_without_chromium_say_how_to_get_it(cli, folder, monkeypatch, tmp_path):
    monkeypatch.setattr(screenshots, "CHROMIUM", tmp_path / "no-chromium")
    result = cli("preview", EXAMPLE, "--screenshots")
    assert result.exit_code == 0
    assert result.stderr.strip() == (
        "Screenshots skipped: Chromium is not installed; run 'sudo apt-get install chromium' "
        "and try again."
    )
    assert (folder / "build" / "2026-11-24-survival-of-the-fittest-funnel.html").is_file()


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.output.startswith("newsletter ")


def test_preview_into_a_path_that_is_a_file_is_an_error(cli, folder):
    (folder / "taken").write_text("x")
    result = cli("preview", EXAMPLE, "--out", "taken")
    assert result.exit_code == 1
    assert "cannot write the preview" in result.stderr and "choose another folder" in result.stderr


def test_init_where_a_file_is_in_the_way(cli, folder):
    result = cli("init", str(folder / "newsletter.toml" / "sub"))
    assert result.exit_code == 1
    assert "cannot create it" in result.stderr


def test_chromium_that_does_not_start_is_a_message(cli, monkeypatch):
    monkeypatch.setattr(screenshots, "CHROMIUM", screenshots.Path("/bin/true"))
    result = cli("preview", EXAMPLE, "--screenshots")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: /bin/true: Chromium did not start (")


def test_screenshots_without_the_playwright_extra_name_it(cli, monkeypatch):
    # A base install, without the [screenshots] extra: playwright cannot be imported.
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    monkeypatch.setattr(screenshots, "CHROMIUM", screenshots.Path("/bin/true"))
    result = cli("preview", EXAMPLE, "--screenshots")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: screenshots need Playwright, which is not installed; install it with "
        "pip install 'newsletter[screenshots]'\n"
    )


def test_a_postgres_url_without_the_psycopg_extra_names_it(cli, folder, monkeypatch):
    # A base install, without the [postgres] extra: psycopg cannot be imported.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    toml = folder / "newsletter.toml"
    toml.write_text(
        toml.read_text().replace(
            'url = "sqlite:///subscribers.db"', 'url = "postgresql://editor@localhost/news"'
        )
    )
    result = cli("subscribers", "count")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: database.url: PostgreSQL needs psycopg, which is not installed; install it "
        "with pip install 'newsletter[postgres]'\n"
    )
