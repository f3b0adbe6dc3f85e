"""The first five minutes: `init` asks who the newsletter is, the demo's identity is
flagged until replaced, the help reads cleanly, and a mistyped issue name gets a
suggestion."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
import tomllib

import pytest

from newsletter.config import load_config

ISSUE = "issues/2026-11-24-survival-of-the-fittest-funnel.md"
OWN = [
    "--name", "Zoë's \"Field\" Notes",
    "--from-address", "zoe@notes.example.org",
    "--from-name", "Zoë Adams",
    "--postal-address", "Zoë Adams, 1 Main Street, Springfield, OR 97477, USA",
    "--base-url", "https://notes.example.org",
]  # fmt: skip


def test_init_takes_the_identity_from_flags(cli, tmp_path):
    result = cli("init", str(tmp_path / "mine"), *OWN)
    assert result.exit_code == 0, result.output
    assert "Note:" not in result.output
    config = load_config(tmp_path / "mine" / "newsletter.toml", environ={})
    assert config.newsletter.name == 'Zoë\'s "Field" Notes'
    assert config.sender.from_address == "zoe@notes.example.org"
    assert config.sender.from_name == "Zoë Adams"
    assert config.newsletter.postal_address.startswith("Zoë Adams, 1 Main Street")
    # Nothing of the demo person is left to sign or answer for the new editor.
    assert config.sender.reply_to is None
    assert (config.signature.name, config.signature.email) == ("Zoë Adams", "zoe@notes.example.org")
    assert config.signature.title == "" and config.signature.links == []
    text = (tmp_path / "mine" / "newsletter.toml").read_text()
    live = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in live if "Northbeam" in line or "Dana" in line or "dana@" in line]
    result = cli("check", "--strict", "--config", str(tmp_path / "mine"))
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output


def test_init_without_a_terminal_or_flags_keeps_the_demo_identity_and_says_so(cli, tmp_path):
    result = cli("init", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    assert (
        "Note: the demo's values stand in for what was not given (--name, --from-address, "
        "--from-name, --postal-address, --base-url)" in " ".join(result.output.split())
    )
    demo = tomllib.loads((tmp_path / "demo" / "newsletter.toml").read_text())
    assert demo["sender"]["from_address"] == "dana@news.example.com"


def test_init_with_some_flags_names_the_rest(cli, tmp_path):
    result = cli("init", str(tmp_path / "half"), "--from-address", "me@mine.example.org")
    assert result.exit_code == 0, result.output
    assert "(--name, --postal-address, --base-url)" in " ".join(result.output.split())
    config = load_config(tmp_path / "half" / "newsletter.toml", environ={})
    assert config.sender.from_name == config.newsletter.name  # never the demo person's
    assert config.signature.name == config.newsletter.name
    result = cli("check", "--config", str(tmp_path / "half"))
    assert "from_address" not in result.output  # given, so no longer the demo's
    assert "postal_address is still the demo's placeholder" in result.output


def test_the_demo_site_left_behind_an_own_identity_is_a_warning(cli, tmp_path):
    own = [a for a in OWN if a not in ("--base-url", "https://notes.example.org")]
    assert cli("init", str(tmp_path / "site"), *own).exit_code == 0
    result = cli("check", "--config", str(tmp_path / "site"))
    assert result.exit_code == 0
    assert (
        "warning: newsletter.base_url is still the demo's https://news.example.com; every "
        "unsubscribe and web link would point at the demo's site" in result.output
    )


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--from-address", "zoe", "error: --from-address: 'zoe' is not a valid email address"),
        ("--postal-address", "x", "error: --postal-address: 'x' is too short"),
        ("--name", "", "error: --name: is empty"),
    ],
)
def test_init_refuses_a_bad_identity_before_writing_anything(cli, tmp_path, flag, value, message):
    result = cli("init", str(tmp_path / "bad"), flag, value)
    assert result.exit_code == 1
    assert result.stderr.startswith(message)
    assert not (tmp_path / "bad").exists()


def _read_until(fd: int, wanted: str, seen: list[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while wanted not in "".join(seen):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {wanted!r} within {timeout} s; got {''.join(seen)!r}")
        try:
            seen.append(os.read(fd, 4096).decode("utf-8", "replace"))
        except OSError:  # the child closed the terminal
            raise AssertionError(f"no {wanted!r}; got {''.join(seen)!r}") from None


def test_init_in_a_terminal_asks_and_asks_again_after_a_bad_answer(tmp_path):
    # A real pseudo-terminal: what the editor types, as typed.
    main, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "init", "letter", "--from-name", "Zoë Adams"],
        stdin=child, stdout=child, stderr=child, cwd=tmp_path, env=env, close_fds=True,
    )  # fmt: skip
    os.close(child)
    seen: list[str] = []
    try:
        for prompt, answer in [
            ("Newsletter name: ", "Field Notes"),
            ("From address (readers see it and reply to it): ", "not-an-address"),
            ("not a valid email address", "zoe@notes.example.org"),
            ("Postal address (the law wants one in every email): ", "1 Main St, Springfield"),
            ("archive links start with it): ", "https://notes.example.org"),
        ]:
            _read_until(main, prompt, seen)
            os.write(main, answer.encode() + b"\r")
        _read_until(main, "Next: edit", seen)
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
        os.close(main)
    output = "".join(seen)
    assert "From name" not in output  # given as a flag, so not asked
    assert "Note:" not in output
    config = load_config(tmp_path / "letter" / "newsletter.toml", environ={})
    assert config.newsletter.name == "Field Notes"
    assert config.sender.from_address == "zoe@notes.example.org"
    assert config.sender.from_name == "Zoë Adams"
    assert config.newsletter.postal_address == "1 Main St, Springfield"
    assert config.newsletter.base_url == "https://notes.example.org"


# The demo's placeholder identity: a warning in check and send, never an error


def test_check_and_send_warn_while_the_demo_identity_is_in_place(cli, folder):
    result = cli("check", ISSUE)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("newsletter.toml:")  # the settings come before the issues
    assert any(
        ": warning: sender.from_address is still the demo's dana@news.example.com" in line
        for line in lines
    )
    assert any(
        ": warning: newsletter.postal_address is still the demo's placeholder" in line
        for line in lines
    )
    result = cli("send", ISSUE, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "warning: newsletter.toml:" in result.stderr and "demo's" in result.stderr
    assert result.stdout.startswith("Dry run: built 0 message(s)")


# Help and errors


def every_command() -> list[list[str]]:
    """Every command's words, read from the app itself, so a new one is covered too."""
    import typer

    from newsletter.cli import app

    def walk(command, words):
        found = [words]
        for name, sub in getattr(command, "commands", {}).items():
            found += walk(sub, [*words, name])
        return found

    return walk(typer.main.get_command(app), [])


@pytest.mark.parametrize("words", every_command(), ids=lambda w: " ".join(w) or "newsletter")
def test_help_has_no_odd_metavars(cli, words):
    result = cli(*words, "--help")
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("Usage: ")
    for odd in ("{", "}", "[[", "]]", "…", "<str>", "<path>", "list[", "<int"):
        assert odd not in text, f"{odd!r} in the help of {' '.join(words)}:\n{text}"


def test_usage_names_arguments_the_usual_way(cli):
    def usage(command: str) -> str:
        return cli(command, "--help").output.splitlines()[0].split(command, 1)[1]

    assert usage("send") == " [OPTIONS] ISSUE"
    assert usage("status") == " [OPTIONS] [ISSUE]"
    assert usage("check") == " [OPTIONS] [ISSUE]..."
    listed = cli("subscribers", "list", "--help").output
    assert "--status [pending|active|unsubscribed|bounced]" in listed
    assert "-c, --config PATH " in listed
    assert "EMAIL  Email address.  [required]" in cli("subscribers", "add", "--help").output


@pytest.mark.parametrize(
    "command, typed",
    [
        ("check", "2026-11-24-survival-of-the-fitest-funnel"),
        ("preview", "survival"),
        ("send", "issues/2026-11-24-survival-of-the-fittest-funel.md"),
    ],
)
def test_an_unknown_issue_name_suggests_the_closest(cli, command, typed):
    result = cli(command, typed)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: {typed}: no such issue file; did you mean "
        "2026-11-24-survival-of-the-fittest-funnel?"
    )


def test_an_issue_name_like_none_says_how_to_start_one(cli):
    result = cli("preview", "quarterly-report")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: quarterly-report: no such issue file; check the path, or run 'newsletter new' "
        "to start one\n"
    )


def test_the_on_this_date_year_reads_as_a_year(cli, folder):
    assert cli("new", "--date", "2026-12-01", "--title", "Flip-flop").exit_code == 0
    path = folder / "issues" / "2026-12-01-flip-flop.md"
    text = path.read_text()
    assert 'on_this_date:  # "On this date in 1839": what happened on December 1, any year' in text
    assert "  year: TODO the year, like 1839\n" in text
    assert "  text: TODO what happened on December 1 of that year" in text
    line = text.splitlines().index("  year: TODO the year, like 1839") + 1
    result = cli("check", "2026-12-01-flip-flop")
    assert (
        f"issues/2026-12-01-flip-flop.md:{line}: error: on_this_date.year: still holds the "
        "scaffold's TODO placeholder; write the year as a number, like 1839"
    ) in result.output
    path.write_text(text.replace("year: TODO the year, like 1839", "year: -5"))
    assert (
        "on_this_date.year: -5 is not a year from 1 to 2200; write the year as a number, like 1839"
        in cli("check", "2026-12-01-flip-flop").output
    )


def test_the_readme_lists_every_command_on_a_line_of_its_own():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `newsletter ")]
    leaves = [
        w
        for w in every_command()
        if w and not any(o[: len(w)] == w and o != w for o in every_command())
    ]
    for words in leaves:
        command = "newsletter " + " ".join(words)
        matching = [
            row
            for row in rows
            if row.startswith(f"| `{command}`") or row.startswith(f"| `{command} ")
        ]
        assert len(matching) == 1, f"{command}: {len(matching)} row(s) in the README's table"
    assert len(rows) == len(leaves)


def test_status_of_a_near_miss_suggests_the_issue(cli):
    result = cli("status", "survival-of-the-fitest-funnel")
    assert result.exit_code == 1
    assert "did you mean 2026-11-24-survival-of-the-fittest-funnel?" in result.stderr
    unknown = cli("status", "nothing-like-it")
    assert "nothing-like-it: has not been sent" in unknown.stderr
