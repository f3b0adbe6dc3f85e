"""The package's shape, read from source with ast (no module is imported): stage
subpackages, size limits, thin CLI commands, imports that only go downward and
never in a circle. Each failure names the file, the line and the rule."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from processes import loaded_after

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "newsletter"
NOT_STAGES = {"cli", "defaults", "migrations", "__pycache__"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_COMMAND_LINES = 20
# What each layer must never import: imports only go downward.
FORBIDDEN = {
    "storage": {"compose", "mail", "service", "web", "cli"},
    "compose": {"service", "web", "cli"},
    "mail": {"service", "web", "cli"},
    "service": {"web", "cli"},
    "web": {"cli"},
}
KERNEL = {"errors", "fields", "config", "tokens"}  # any layer may use them, so they use none
STAGES = {"storage", "compose", "mail", "service", "web", "cli", "devtools"}
# What `newsletter --help` must not load: each costs tens of milliseconds of startup.
HEAVY = ["sqlalchemy", "fastapi", "premailer", "mjml", "pydantic", "rich", "aiosmtpd"]


@dataclass(frozen=True)
class Module:
    name: str  # dotted: newsletter.compose.render
    path: Path
    tree: ast.Module
    lines: int

    @property
    def where(self) -> str:
        return str(self.path.relative_to(ROOT))

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @property
    def layer(self) -> str | None:
        """The stage (storage, compose, …), "kernel", or None (e.g. newsletter/__main__)."""
        parts = self.name.split(".")
        if len(parts) > 1 and parts[1] in STAGES:
            return parts[1]
        return "kernel" if len(parts) == 2 and parts[1] in KERNEL else None


@dataclass(frozen=True)
class Import:
    source: Module
    target: str  # dotted name of a module under newsletter/
    line: int
    names: tuple[str, ...]  # the names of `from target import names`; () for `import`


@cache
def modules() -> dict[str, Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        text = path.read_text(encoding="utf-8")
        found[name] = Module(name, path, ast.parse(text, str(path)), len(text.splitlines()))
    return found


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    base = base if module.is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def imports() -> list[Import]:
    """Every import of a newsletter module, at any depth: an import inside a function
    is still a dependency. `from pkg import mod` counts as importing pkg.mod."""
    known = modules()
    found = []
    for module in known.values():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in known:
                        found.append(Import(module, alias.name, node.lineno, ()))
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, node)
                if base not in known:
                    continue
                rest = []
                for alias in node.names:
                    if f"{base}.{alias.name}" in known:
                        found.append(Import(module, f"{base}.{alias.name}", node.lineno, ()))
                    else:
                        rest.append(alias.name)
                if rest:
                    found.append(Import(module, base, node.lineno, tuple(rest)))
    return found


def functions(module: Module):
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def is_command(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Decorated with @app.command, @app.command(...), @db_app.command(...), …"""
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "command":
            return True
    return False


def leading_imports(function: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[list, int]:
    """The body after its docstring and the imports it starts with, and how many lines
    those imports take. A command imports what it needs when it runs, so that
    `newsletter --help` starts fast; those lines are not logic and do not count."""
    body = list(function.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    first = body[0].lineno if body else 0
    while body and isinstance(body[0], ast.Import | ast.ImportFrom):
        body = body[1:]
    return body, (body[0].lineno - first if body else 0)


def function_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    return function.end_lineno - function.lineno + 1 - leading_imports(function)[1]


def command_body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int]:
    """(first line, line count) of a command's body, without docstring and imports."""
    body, _ = leading_imports(function)
    if not body:
        return function.lineno, 0
    return body[0].lineno, function.end_lineno - body[0].lineno + 1


def failing(problems: list[str], rule: str) -> None:
    assert not problems, f"{len(problems)} break the rule '{rule}':\n" + "\n".join(problems)


# The rules -------------------------------------------------------------------


def test_the_package_is_split_into_stage_subpackages():
    stages = sorted(
        path.name
        for path in PACKAGE.iterdir()
        if (path / "__init__.py").is_file() and path.name not in NOT_STAGES
    )
    assert len(stages) >= 4, (
        f"newsletter/: stage subpackages: only {stages}; the rule wants at least four "
        "(compose, mail, storage, service, web, …) besides cli/"
    )


def test_no_module_is_over_400_lines():
    failing(
        [
            f"{m.where}:1: {m.lines} lines (at most {MAX_MODULE_LINES})"
            for m in modules().values()
            if m.lines > MAX_MODULE_LINES
        ],
        f"modules of at most {MAX_MODULE_LINES} lines",
    )


def test_no_function_is_over_60_lines():
    problems = []
    for m in modules().values():
        if ".migrations." in m.name:
            continue  # a released migration is history: it is never rewritten
        for f in functions(m):
            length = function_lines(f)
            if length > MAX_FUNCTION_LINES:
                problems.append(f"{m.where}:{f.lineno}: {f.name} is {length} lines")
    failing(problems, f"functions of at most {MAX_FUNCTION_LINES} lines")


def test_cli_command_bodies_are_20_lines_or_fewer():
    problems = []
    for m in modules().values():
        if m.layer != "cli":
            continue
        for f in functions(m):
            first, length = command_body_lines(f)
            if is_command(f) and length > MAX_COMMAND_LINES:
                problems.append(f"{m.where}:{first}: command {f.name} has a {length}-line body")
    failing(problems, f"CLI command bodies of at most {MAX_COMMAND_LINES} lines")


def test_the_cli_does_not_import_sqlalchemy():
    problems = []
    for m in modules().values():
        if m.layer != "cli":
            continue
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if not node.level else []
            else:
                continue
            if any(name.split(".")[0] == "sqlalchemy" for name in names):
                problems.append(f"{m.where}:{node.lineno}: imports sqlalchemy")
    failing(problems, "newsletter/cli/ does not import sqlalchemy (storage/ holds the SQL)")


def test_no_module_uses_another_modules_private_names():
    problems = []
    for i in imports():
        for name in i.names:
            if name.startswith("_") and not name.endswith("__"):
                problems.append(f"{i.source.where}:{i.line}: imports {name} from {i.target}")
    # `from newsletter.compose import render` … `render._view(…)` is the same thing.
    for m in modules().values():
        bound = {}
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ImportFrom) and _absolute(m, node) in modules():
                for alias in node.names:
                    if f"{_absolute(m, node)}.{alias.name}" in modules():
                        bound[alias.asname or alias.name] = f"{_absolute(m, node)}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in modules():
                        bound[alias.asname] = alias.name
        for node in ast.walk(m.tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and node.attr.startswith("_")
                and not node.attr.endswith("__")
            ):
                problems.append(
                    f"{m.where}:{node.lineno}: uses {node.attr} of {bound[node.value.id]}"
                )
    failing(problems, "no module uses another module's private _name")


def test_imports_only_go_downward():
    problems = []
    for i in imports():
        source, target = i.source.layer, modules()[i.target].layer
        forbidden = STAGES if source == "kernel" else FORBIDDEN.get(source, set())
        if target in forbidden:
            problems.append(f"{i.source.where}:{i.line}: {source} imports {i.target}")
    failing(
        problems,
        "imports go downward: storage imports no compose/mail/service/web/cli; compose and "
        "mail no service/web/cli; service no web/cli; web no cli; errors/fields/config/tokens "
        "no stage",
    )


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_cycles_finds_a_circle_and_only_the_circle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    edges: dict[str, set[str]] = {}
    for i in imports():
        if i.target != i.source.name:
            edges.setdefault(i.source.name, set()).add(i.target)
    problems = []
    for component in cycles(edges):
        members = set(component)
        links = [
            f"{i.source.where}:{i.line} imports {i.target}"
            for i in imports()
            if i.source.name in members and i.target in members and i.target != i.source.name
        ]
        problems.append(f"cycle {' ↔ '.join(component)}: " + "; ".join(links))
    failing(problems, "no import cycles between modules")


def test_newsletter_help_loads_none_of_the_heavy_libraries():
    code = (
        "from newsletter.cli import app\n"
        "try:\n"
        "    app(['--help'], prog_name='newsletter')\n"
        "except SystemExit:\n"
        "    pass"
    )
    loaded, printed = loaded_after(code, HEAVY)
    assert "Commands:" in printed
    assert not loaded, f"newsletter --help imports {', '.join(loaded)}"


def test_a_worker_without_dkim_or_an_issue_to_render_loads_neither_openssl_nor_premailer():
    """Every worker process pays for what it imports (the memory target is per worker):
    the DKIM signer and the CSS inliner load only when they have work."""
    loaded, _ = loaded_after(
        "import newsletter.service.worker, newsletter.service.sending",
        ["cryptography", "premailer", "cssutils"],
    )
    assert not loaded, f"a worker imports {', '.join(loaded)} before it needs them"
