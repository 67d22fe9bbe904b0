"""Imports run down the floors (docs/architecture.md), never up.

Each package may import its own floor and the floors below it. An import
that runs upward fails here, at module level always; inside a function
only when a comment on its line or the line above says why (pretalx's
rule). Within an app, models, services and queries never import views,
forms, consumers or routes.

Read from the source with ``ast``: nothing is imported, so a cycle cannot
hide behind an import that happens to run first.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Lowest first. A package imports its own floor and those below it.
FLOORS = ["core", "events", "attendance", "streaming", "config"]
#: First-party code above every floor: the application never imports it.
ABOVE = ["tests", "bench"]

#: Within an app: modules that hold the rules and the data...
LOWER_MODULES = {"models", "services", "queries"}
#: ...never import the modules that answer requests and connections.
UPPER_MODULES = {
    "views",
    "manage_views",
    "forms",
    "manage_forms",
    "consumers",
    "routing",
    "urls",
    "manage_urls",
}


def _rank(module: str) -> int | None:
    top = module.split(".")[0]
    if top in FLOORS:
        return FLOORS.index(top)
    if top in ABOVE:
        return len(FLOORS)
    return None  # the standard library or a third-party package


@dataclass(frozen=True)
class Import:
    path: str  # relative to the repository, with forward slashes
    line: int
    target: str  # the module imported from, absolute
    names: tuple[str, ...]  # what ``from target import ...`` names; () for ``import``
    in_function: bool
    reason: str  # the comment on the line or the line above, if any

    def __str__(self) -> str:
        where = " (inside a function)" if self.in_function else ""
        return f"{self.path}:{self.line} imports {self.target}{where}"


def _comments(source: str) -> dict[int, str]:
    """Comment text by line, leaving out tool directives (noqa, type:
    ignore, pragma), which say nothing about why."""
    found: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        text = token.string.lstrip("#").strip()
        if text.startswith(("noqa", "type:", "pragma")):
            continue
        found[token.start[0]] = text
    return found


def _package(path: str) -> list[str]:
    """The package a relative import in ``path`` starts from."""
    return path.split("/")[:-1]


def imports_of(path: str, source: str) -> list[Import]:
    """Every first-party import in ``source`` (the file at ``path``)."""
    tree = ast.parse(source, filename=path)
    comments = _comments(source)
    lines = source.splitlines()
    found: list[Import] = []

    def reason_for(line: int) -> str:
        if line in comments:
            return comments[line]
        above = line - 1
        if above >= 1 and lines[above - 1].lstrip().startswith("#"):
            return comments.get(above, "")
        return ""

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                targets = [(alias.name, ()) for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = _package(path)
                    package = package[: len(package) - (child.level - 1)]
                    base = ".".join([*package, base] if base else package)
                targets = [(base, tuple(alias.name for alias in child.names))]
            else:
                visit(
                    child,
                    in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef),
                )
                continue
            for target, names in targets:
                if _rank(target) is not None:
                    found.append(
                        Import(
                            path, child.lineno, target, names, in_function, reason_for(child.lineno)
                        )
                    )

    visit(tree, in_function=False)
    return found


def upward(imp: Import) -> bool:
    own, other = _rank(imp.path.replace("/", ".")), _rank(imp.target)
    assert own is not None, imp.path
    return other is not None and other > own


def violations(path: str, source: str) -> list[Import]:
    """The imports of ``source`` that run upward without leave."""
    return [
        imp
        for imp in imports_of(path, source)
        if upward(imp) and not (imp.in_function and imp.reason)
    ]


def _sources() -> list[tuple[str, str]]:
    found = []
    for floor in FLOORS:
        for file in sorted((ROOT / floor).rglob("*.py")):
            found.append((file.relative_to(ROOT).as_posix(), file.read_text(encoding="utf-8")))
    return found


def test_every_package_has_a_floor():
    packages = {entry.parent.name for entry in ROOT.glob("*/*.py")}
    assert packages == set(FLOORS) | set(ABOVE)


def test_no_import_runs_up_the_floors():
    found = [str(imp) for path, source in _sources() for imp in violations(path, source)]
    assert found == []


def test_upward_imports_inside_functions_are_only_those_docs_list():
    """docs/architecture.md names every upward import left inside a
    function; today there is none."""
    allowed = [
        str(imp)
        for path, source in _sources()
        for imp in imports_of(path, source)
        if upward(imp) and imp.in_function and imp.reason
    ]
    assert allowed == []


def test_models_services_and_queries_import_no_views_forms_or_consumers():
    found = []
    for path, source in _sources():
        module = Path(path)
        if (module.parent.name if module.stem == "__init__" else module.stem) not in LOWER_MODULES:
            continue
        for imp in imports_of(path, source):
            named = {*imp.target.split(".")[1:], *imp.names}
            if named & UPPER_MODULES or _rank(imp.target) == FLOORS.index("config"):
                found.append(str(imp))
    assert found == []


# The checker itself ---------------------------------------------------------------


def test_the_checker_refuses_an_upward_import_at_module_level():
    source = "from django.db import models\n\nfrom streaming import hub\nimport core.redis\n"
    assert [str(v) for v in violations("events/models.py", source)] == [
        "events/models.py:3 imports streaming"
    ]


def test_the_checker_refuses_an_upward_import_in_a_function_unless_it_says_why():
    source = (
        "def bare():\n"
        "    from config import urls  # noqa: F401\n"
        "\n"
        "\n"
        "async def explained():\n"
        "    # The test runner imports it before the app is ready.\n"
        "    from tests import factories\n"
        "    import attendance.services  # read at call time, after every app loads\n"
    )
    assert [str(v) for v in violations("core/loops.py", source)] == [
        "core/loops.py:2 imports config (inside a function)"
    ]


def test_the_checker_resolves_relative_imports():
    source = "from . import views\nfrom ..events.forms import clean_field\nfrom .x import y\n"
    imports = imports_of("streaming/sub/services.py", source)
    assert [(imp.target, imp.names) for imp in imports] == [
        ("streaming.sub", ("views",)),
        ("streaming.events.forms", ("clean_field",)),
        ("streaming.sub.x", ("y",)),
    ]
