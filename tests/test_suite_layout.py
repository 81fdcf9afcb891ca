"""The suite's own layout: shared helpers, constants and fixtures live in one place each.

Fixtures and constants are in conftest.py; plain helpers in the helper modules (support.py,
live_server.py, provider_scenarios.py, smtp_server.py, ...). A test module imports from
those, never from another test module, and never keeps its own copy of a shared thing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
FILES = sorted(TESTS.rglob("*.py"))


def parsed(path: Path) -> ast.Module:
    """The file's syntax tree."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def where(path: Path, node: ast.AST) -> str:
    """tests/file.py:line of the node, for the failure message."""
    return f"{path.relative_to(TESTS.parent)}:{node.lineno}"


def imported_names(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The last part of every module name the import statement may load."""
    if isinstance(node, ast.Import):
        yield from (alias.name.rpartition(".")[2] for alias in node.names)
        return
    if node.module:
        yield node.module.rpartition(".")[2]
    if node.module is None:  # `from . import name`: the names may be modules
        yield from (alias.name for alias in node.names)


def constants(path: Path) -> Iterator[tuple[str, str, ast.Assign]]:
    """(name, value as parsed, statement) of each module-level `NAME = value`; not
    `pytestmark`, which pytest reads per module (its value is shared from conftest)."""
    for node in parsed(path).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id != "pytestmark":
            yield node.targets[0].id, ast.dump(node.value), node


def is_number(node: ast.Assign) -> bool:
    """Whether the value is a plain int or float literal."""
    return isinstance(node.value, ast.Constant) and type(node.value.value) in (int, float)


def owned_by_a_test(path: Path) -> bool:
    """Test modules and conftest.py: the files whose constants must be nobody else's."""
    return path.name.startswith("test_") or path.name == "conftest.py"


def is_emulator(path: Path) -> bool:
    """A contract server's own module (tests/contract/, not its tests)."""
    # The contract servers run on their own too (`python -m tests.contract`, for the
    # benchmark), so they import nothing of the suite: their loopback address is their own.
    return path.parent.name == "contract" and not path.name.startswith("test_")


def test_no_file_of_the_suite_imports_a_test_module():
    found = [f"{where(path, node)}: imports {name}"
             for path in FILES for node in ast.walk(parsed(path))
             if isinstance(node, (ast.Import, ast.ImportFrom))
             for name in imported_names(node) if name.startswith("test_")]
    assert found == []


def test_a_constant_of_a_test_module_or_conftest_is_defined_nowhere_else():
    # Numbers coincide by chance (a limit of 1000, a count of 6), so only the same name
    # counts for them; equal strings, paths and collections are copies whatever their name.
    everywhere = [(path, name, value, node) for path in FILES if not is_emulator(path)
                  for name, value, node in constants(path)]
    found = {f"{where(path, node)}: {name}": f"{other} at {where(at, seen)}"
             for path, name, value, node in everywhere if owned_by_a_test(path)
             for at, other, again, seen in everywhere
             if at != path and value == again and (name == other or not is_number(node))}
    assert found == {}


def helper_bodies(path: Path) -> Iterator[tuple[str, ast.AST]]:
    """(signature and body without its docstring, node) of each top-level helper or fixture."""
    for node in parsed(path).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) \
                and not node.name.startswith(("test_", "Test")):
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            if not body:  # a marker class, e.g. an exception: nothing in it to copy
                continue
            signature = (node.bases if isinstance(node, ast.ClassDef) else [node.args])
            yield "".join(ast.dump(part) for part in [*signature, *body]), node


def test_no_helper_or_fixture_is_defined_twice():
    everywhere = [(path, body, node) for path in FILES for body, node in helper_bodies(path)]
    found = [f"{where(path, node)}: {node.name} is a copy of {seen.name} at {where(at, seen)}"
             for n, (path, body, node) in enumerate(everywhere)
             for at, again, seen in everywhere[:n] if body == again]
    assert found == []
