"""The suite's own layout: it mirrors the package, and shared helpers, constants and fixtures
live in one place each.

tests/content/ holds the tests of publisher/content/, and so on for every subpackage; tests of
the package's root modules sit at the top as test_<module>.py; system/ holds whole-product
tests. Fixtures are in conftest.py, constants in samples.py, plain helpers and the servers the
tests start in helpers/ (the provider emulators in contract/, which also run on their own). A
test module imports those by absolute path (`from tests.samples import ...`), never from
another test module, and never keeps its own copy of a shared thing.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "publisher"
FILES = sorted(TESTS.rglob("*.py"))
# Folders of tests/ that mirror no subpackage: whole-product tests, the helpers, the provider
# emulators, and the data the tests read.
OWN_FOLDERS = {"system", "helpers", "contract", "fixtures"}
# Top-level test modules that are about the repo rather than one root module of the package.
SHAPE_TESTS = {"test_architecture.py", "test_code_shape.py", "test_suite_layout.py"}
# Where a test module may import shared things from (besides the package and third parties).
SHARED = ("tests.samples", "tests.helpers", "tests.contract")


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
    """Test modules, conftest.py and samples.py: the files whose constants must be nobody
    else's."""
    return path.name.startswith("test_") or path.name in ("conftest.py", "samples.py")


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


def test_every_import_of_the_suite_is_absolute():
    found = [f"{where(path, node)}: from {'.' * node.level}{node.module or ''} import ..."
             for path in FILES for node in ast.walk(parsed(path))
             if isinstance(node, ast.ImportFrom) and node.level > 0]
    assert found == [], "\n".join(found)


def test_shared_things_come_from_samples_helpers_or_contract():
    found = [f"{where(path, node)}: from {node.module} import ..."
             for path in FILES for node in ast.walk(parsed(path))
             if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests")
             and not node.module.startswith(SHARED)]
    assert found == [], "\n".join(found)


def is_fixture(node: ast.FunctionDef) -> bool:
    """Whether a function is decorated as a pytest fixture (`@pytest.fixture` or
    `@pytest.fixture(...)`)."""
    return any("pytest.fixture" in ast.unparse(decorator) for decorator in node.decorator_list)


def test_conftest_holds_fixtures_only():
    # Constants are in samples.py and plain helpers in helpers/, so that a test imports them
    # by name; a private helper of the fixtures (the leading underscore) may stay.
    found = []
    for path in FILES:
        if path.name != "conftest.py":
            continue
        for node in parsed(path).body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                found.append(f"{where(path, node)}: a constant (it goes in samples.py)")
            elif isinstance(node, ast.FunctionDef | ast.ClassDef) \
                    and not node.name.startswith("_") \
                    and not (isinstance(node, ast.FunctionDef) and is_fixture(node)):
                found.append(f"{where(path, node)}: {node.name} is no fixture (helpers/ has those)")
    assert found == [], "\n".join(found)


def test_each_folder_of_the_suite_mirrors_a_subpackage_or_is_its_own():
    folders = {path.parent for path in TESTS.rglob("test_*.py")} | \
        {path for path in TESTS.iterdir() if path.is_dir() and path.name != "__pycache__"}
    found = []
    for folder in sorted(folders - {TESTS}):
        part = folder.relative_to(TESTS)
        if part.parts[0] in OWN_FOLDERS:
            continue
        if not (PACKAGE / part / "__init__.py").exists():
            found.append(f"tests/{part}/: publisher/{part}/ is no subpackage")
        if not (folder / "__init__.py").exists():
            found.append(f"tests/{part}/: no __init__.py (test modules' names would collide)")
    assert found == [], "\n".join(found)


def test_a_test_module_at_the_top_is_named_after_a_root_module_of_the_package():
    found = [f"tests/{path.name}: publisher/{path.name[5:]} does not exist"
             for path in sorted(TESTS.glob("test_*.py"))
             if path.name not in SHAPE_TESTS and not (PACKAGE / path.name[5:]).exists()]
    assert found == [], "\n".join(found)


def test_the_fixtures_folder_holds_data_only():
    found = [str(path.relative_to(TESTS.parent)) for path in (TESTS / "fixtures").rglob("*.py")]
    assert found == [], "\n".join(found)


def names_a_missing_module(text: str) -> bool:
    """Whether a string such as "tests.helpers.support" or "tests.x:Class" names a module of
    the suite that does not exist (a dotted path left behind by a move)."""
    module = text.partition(":")[0]
    if not re.fullmatch(r"tests(\.\w+)+", module):
        return False
    path = TESTS.parent.joinpath(*module.split("."))
    return not (path.with_suffix(".py").exists() or (path / "__init__.py").exists())


def test_every_dotted_path_to_the_suite_names_a_module_that_exists():
    found = [f"{where(path, node)}: {node.value!r}"
             for path in FILES for node in ast.walk(parsed(path))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and names_a_missing_module(node.value)]
    assert found == [], "\n".join(found)
