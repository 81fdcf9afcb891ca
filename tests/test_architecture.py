"""The package's architecture, as docs/architecture.md states its rules: no import cycles, no
import inside a function but of an optional or heavy dependency, SQL only in publisher/store/
and with named binds, a small root, and subpackages that say what they own.

Each test reads the source with ast (nothing of the package is imported) and names the
file:line of everything that breaks its rule.
"""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from tests.samples import REPO

PACKAGE = REPO / "publisher"
STORE = PACKAGE / "store"
MAX_ROOT_MODULES = 10

# What a function may import for itself: dependencies a run may not have installed, or that
# cost enough to load that only the verb which needs them should pay for them.
DEFERRED = {
    "boto3", "botocore",  # the ses extra: installed only by who sends through SES
    "psycopg",  # the PostgreSQL driver, loaded only for a postgresql:// store
    "playwright",  # the browser, for screenshots only
    "watchfiles",  # `runletter preview`'s file watcher
    "gunicorn",  # `runletter serve`'s production server
    "requests",  # 100 ms to import, for `check --links` only (it asks the network)
    "alembic",  # migrations, loaded only when a store's schema is behind
    "sqlalchemy",  # 0.15 s; config reads a store URL with it, and build, check, render never do
}

# A statement's verb, as the store writes SQL: upper case, a word on its own.
SQL_VERB = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b")
# Words that make a string SQL for the placeholder check (a fragment such as "AND id = ?"
# carries no verb of its own).
SQL_WORD = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|WHERE|VALUES|SET|AND|OR|IN|JOIN|"
                      r"LIMIT|OFFSET|RETURNING)\b")
QUOTED = re.compile(r"'(?:[^']|'')*'")  # an SQL string literal, whose `?` is text
QMARK = re.compile(r"(?:[=(,<>]|\b(?:IN|IS|LIKE|AND|OR|THEN|ELSE|LIMIT|OFFSET|SELECT))\s*\?"
                   r"|\?\s*[,)]")


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


@functools.cache
def parsed(path: Path) -> ast.Module:
    """The file's syntax tree, with each node's parent set (`node.up`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.up = node  # type: ignore[attr-defined]
    return tree


def where(path: Path, node: ast.AST) -> str:
    """publisher/file.py:line of the node, for the failure message."""
    return f"{path.relative_to(REPO)}:{node.lineno}"


def ancestors(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes that hold this one, innermost first."""
    while (node := getattr(node, "up", None)) is not None:
        yield node


def only_for_type_checkers(node: ast.AST) -> bool:
    """Whether the node sits under `if TYPE_CHECKING:`, which never runs."""
    return any(isinstance(up, ast.If) and "TYPE_CHECKING" in ast.unparse(up.test)
               for up in ancestors(node))


def in_a_function(node: ast.AST) -> bool:
    """Whether the node runs only when a function is called."""
    return any(isinstance(up, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
               for up in ancestors(node))


def imports(name: str, path: Path) -> Iterator[tuple[ast.Import | ast.ImportFrom, list[str]]]:
    """(statement, the absolute module names it may load) of each import that runs, at the
    top level and inside functions; a relative import is made absolute."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(parsed(path)):
        if only_for_type_checkers(node):
            continue
        if isinstance(node, ast.Import):
            yield node, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1],
                                 *([base] if base else [])])
            yield node, [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph() -> dict[str, dict[str, str]]:
    """For each module, the package's modules it imports, each with where it does first."""
    known = modules()
    graph: dict[str, dict[str, str]] = {name: {} for name in known}
    for name, path in known.items():
        for node, targets in imports(name, path):
            for target in targets:
                if target in known and target != name:
                    graph[name].setdefault(target, where(path, node))
    return graph


def strongly_connected(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def a_cycle(graph: dict[str, dict[str, str]], component: list[str]) -> list[str]:
    """The shortest cycle through the component's first module, as modules in import order."""
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node]):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if target in members and target not in came_from:
                came_from[target] = node
                queue.append(target)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def described(graph: dict[str, dict[str, str]], cycle: list[str]) -> str:
    """The cycle as `a (file:line) -> b (file:line) -> ... -> a`."""
    steps = [f"{module} ({graph[module][target]})"
             for module, target in zip(cycle, cycle[1:], strict=False)]
    return "CYCLE: " + " -> ".join([*steps, cycle[-1]])


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    cycles = [described(graph, a_cycle(graph, part)) for part in strongly_connected(graph)]
    assert cycles == [], "\n".join(cycles)


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:2"}, "c": {"a": "c.py:3"}, "d": {"a": "d:4"}}
    assert [described(graph, a_cycle(graph, part)) for part in strongly_connected(graph)] == [
        "CYCLE: a (a.py:1) -> b (b.py:2) -> c (c.py:3) -> a"]


def test_a_function_imports_only_an_optional_or_heavy_dependency():
    found = [f"{where(path, node)}: {ast.unparse(node)}"
             for name, path in modules().items() for node, targets in imports(name, path)
             if in_a_function(node)
             and (isinstance(node, ast.ImportFrom) and node.level
                  or targets[0].partition(".")[0] not in DEFERRED)]
    assert found == [], "\n".join(found)


def string_literals(path: Path) -> Iterator[tuple[ast.AST, str]]:
    """(node, text) of each string the code uses; an f-string's fields read `{}`, and a
    docstring or any other string statement, which is never run as SQL, is left out."""
    for node in ast.walk(parsed(path)):
        if isinstance(getattr(node, "up", None), ast.Expr | ast.JoinedStr):
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node, node.value
        elif isinstance(node, ast.JoinedStr):
            yield node, "".join(part.value if isinstance(part, ast.Constant) else "{}"
                                for part in node.values)


def test_sql_is_written_only_in_the_store():
    found = [f"{where(path, node)}: {text.strip()[:60]!r}"
             for path in modules().values() if STORE not in path.parents
             for node, text in string_literals(path) if SQL_VERB.search(text)]
    assert found == [], "\n".join(found)


def is_question_marks(node: ast.AST) -> bool:
    """Whether the node is `"?" * n`, the marks of a hand-joined IN list."""
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and any(
        isinstance(side, ast.Constant) and side.value == "?" for side in (node.left, node.right))


def test_no_sql_string_has_a_question_mark_placeholder():
    # Named binds (`:email`) and `bindparam(..., expanding=True)` for lists, so that no
    # placeholder has to be rewritten and no list is joined by hand.
    found = [f"{where(path, node)}: {text.strip()[:60]!r}"
             for path in modules().values() for node, text in string_literals(path)
             if SQL_WORD.search(text) and QMARK.search(QUOTED.sub("''", text))]
    found += [f"{where(path, node)}: {ast.unparse(node)}"
              for path in modules().values() for node in ast.walk(parsed(path))
              if is_question_marks(node)]
    assert found == [], "\n".join(found)


def test_the_package_root_has_at_most_ten_modules():
    root = sorted(path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py")
    assert len(root) <= MAX_ROOT_MODULES, f"publisher/ has {len(root)}: {', '.join(root)}"


def test_every_package_says_what_it_owns():
    found = [f"{path.relative_to(REPO)}:1: no docstring" for path in sorted(PACKAGE.rglob("*"))
             if path.is_dir() and (path / "__init__.py").exists()
             and not ast.get_docstring(parsed(path / "__init__.py"))]
    assert found == [], "\n".join(found)


def test_every_module_of_the_package_imports_in_a_fresh_interpreter():
    # The rules above read the source; this runs it, so a name imported from a module that no
    # longer defines it (an import-time error no cycle test sees) fails here, not in a verb.
    modules = [".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
               for path in sorted(PACKAGE.rglob("*.py"))
               if path.name != "__main__.py" and "migrations" not in path.parts]
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run([sys.executable, "-c", script, *modules], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
