"""The composing commands stay thin and quick to load: `newsletter --help` must
not pay for Jinja2, MJML, pydantic or YAML, and each command is a few lines
over one compose function."""

from __future__ import annotations

import ast
import gc
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MINIMAL_ISSUE

import newsletter.cli.compose

SOURCE = Path(newsletter.cli.compose.__file__)
# The CLI's own light helpers, and the kernel module that is only stdlib.
LIGHT = {"typer", "newsletter.cli.common", "newsletter.errors"}


def module_level_imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
        elif isinstance(node, ast.If | ast.Try | ast.With):
            names |= module_level_imports(ast.Module(body=list(ast.iter_child_nodes(node))))
    return names


def test_compose_cli_imports_only_typer_and_the_standard_library_at_load():
    names = module_level_imports(ast.parse(SOURCE.read_text()))
    heavy = {
        name
        for name in names
        if name not in LIGHT and name.split(".")[0] not in sys.stdlib_module_names
    }
    assert heavy == set(), f"import these inside the command that needs them: {sorted(heavy)}"


@pytest.mark.parametrize("command", ["init", "new", "check", "preview"])
def test_command_body_is_twenty_lines_or_fewer(command):
    tree = ast.parse(SOURCE.read_text())
    (function,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == command]
    length = function.end_lineno - function.body[0].lineno + 1
    assert length <= 20, f"{command} has a {length}-line body; move the logic into compose/"


def test_check_without_issues_checks_every_issue(cli, write_issue):
    write_issue(MINIMAL_ISSUE, "2026-12-01-short.md")
    result = cli("check")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-3:] == [
        "issues/2026-11-24-survival-of-the-fittest-funnel.md: ok",
        "issues/2026-12-01-short.md: ok",
        # The two: the test folder keeps the demo's From and postal address.
        "Checked 2 issue(s): 0 error(s), 2 warning(s).",
    ]


def test_check_of_an_empty_issues_folder_says_how_to_start(cli, folder):
    for path in (folder / "issues").glob("*.md"):
        path.unlink()
    result = cli("check")
    assert result.exit_code == 1
    assert result.stderr == "error: issues: has no issues yet; run 'newsletter new'\n"


def test_strict_check_fails_on_a_warning_alone(cli, write_issue):
    write_issue(MINIMAL_ISSUE, "2026-12-08-short.md")  # the date disagrees with the name
    assert cli("check", "issues/2026-12-08-short.md").exit_code == 0
    result = cli("check", "--strict", "issues/2026-12-08-short.md")
    assert result.exit_code == 1
    assert "0 error(s), 3 warning(s)" in result.output  # and the demo identity's two


def test_commands_run_with_the_collectors_own_thresholds(cli, write_issue):
    """Starting up and `check` collect garbage rarely (collections were a tenth of a
    check); every command, and whatever runs after `check` in the same process (a
    test run), gets the interpreter's own thresholds back."""
    defaults = subprocess.run(
        [sys.executable, "-c", "import gc; print(gc.get_threshold())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    path = write_issue(MINIMAL_ISSUE)
    result = cli("check", str(path))
    assert result.exit_code == 0, result.output
    assert str(gc.get_threshold()) == defaults
    gc.set_threshold(100_000, 50, 50)  # as the CLI's start-up leaves them
    assert cli("subscribers", "count").exit_code == 0
    assert str(gc.get_threshold()) == defaults
    assert gc.get_freeze_count() == 0  # nothing `check` made stays out of collection
