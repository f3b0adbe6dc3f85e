"""The subscriber commands stay thin: no database code in the CLI, short functions."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import newsletter
from newsletter.cli import subscribers as cli
from newsletter.storage.models import Status

PACKAGE = Path(newsletter.__file__).parent
MODULES = [
    "cli/subscribers.py",
    "service/subscribers.py",
    "service/csvfiles.py",
    "storage/subscribers.py",
    "storage/db.py",
]


def module_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            body_start = node.body[0].lineno
            if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
                body_start = node.body[1].lineno if len(node.body) > 1 else node.end_lineno
            yield node.name, node.end_lineno - node.lineno + 1, node.end_lineno - body_start + 1


def test_the_subscriber_cli_loads_no_database_code():
    imported = module_level_imports(PACKAGE / "cli/subscribers.py")
    database = {i for i in imported if i.startswith(("sqlalchemy", "newsletter.storage"))}
    assert not database
    assert not {i for i in imported if i.startswith("newsletter.service")}  # loads the ORM


def test_the_cli_status_choices_are_the_stored_statuses():
    assert typing.get_args(cli.StatusName) == tuple(s.value for s in Status)


def test_modules_and_functions_stay_small():
    for name in MODULES:
        path = PACKAGE / name
        assert len(path.read_text().splitlines()) < 400, name
        for function, length, body in functions(path):
            assert length < 60, f"{name}: {function} is {length} lines"
            if name.startswith("cli/"):
                assert body <= 20, f"{name}: command {function} body is {body} lines"
