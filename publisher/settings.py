"""Typed settings: a TOML table read into a frozen dataclass, key by key, with a place for
every mistake.

One mechanism for `runletter.toml` and for each provider's settings: the dataclass's fields
are the keys, their annotations the types, a field without a default is required.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from publisher.errors import Finding, suggest

T = TypeVar("T")
LineOf = Callable[[str | None], int | None]  # key (None: the table's header) -> line

_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
               tuple: "a list"}


def _kind(hint: Any) -> tuple[type, type | None]:
    """(the Python type a value must have, the type of its items for a list)."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple, typing.get_args(hint)[0]
    if origin in (typing.Union, types.UnionType):  # `float` fields accept ints: int | float
        return float, None
    return hint, None


def toml_line(text: str, table: str, key: str | None = None) -> int | None:
    """Best-effort line of `[table]` (or of `key` inside it) in a TOML text, for errors."""
    current = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", line)
        if header:
            current = header.group(1)
            if key is None and current == table:
                return number
            continue
        if key is not None and current == table and re.match(rf"^{re.escape(key)}\s*=", line):
            return number
    return None


def type_name(hint: Any) -> str:
    """How an error names the type a key must have ('a whole number', 'a list', …)."""
    kind, _ = _kind(hint)
    return _TYPE_NAMES.get(kind, getattr(kind, "__name__", str(kind)))


def _fits(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False  # TOML's true is no number
    if kind is float:
        return isinstance(value, int | float)
    if kind is tuple:
        return isinstance(value, list | tuple)
    return isinstance(value, kind)


def _convert(value: Any, kind: type) -> Any:
    if kind is float:
        return float(value)
    if kind is tuple:
        return tuple(value)
    return value


def read_table(cls: type[T], given: Any, table: str, source: str,
               line_of: LineOf) -> tuple[T, list[Finding]]:
    """Read one table into `cls`; the findings name `source`, the line and a suggestion.

    With findings, the instance still has every field (defaults or the values as given), so
    callers can gather all problems before raising.
    """
    findings: list[Finding] = []
    if not isinstance(given, Mapping):
        findings.append(Finding(source, line_of(None), f"'{table}' must be a table [{table}]"))
        given = {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in given:
        if key not in fields:
            findings.append(Finding(source, line_of(key), f"unknown key '{key}' in [{table}]"
                                    + suggest(key, list(fields))))
    values: dict[str, Any] = {}
    for name, field in fields.items():
        kind, item = _kind(hints[name])
        required = (field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING)
        if name not in given:
            if required:
                findings.append(Finding(source, line_of(None),
                                        f"missing required key '{name}' in [{table}]"))
        elif not _fits(given[name], kind):
            findings.append(Finding(source, line_of(name),
                                    f"[{table}] {name} must be {type_name(hints[name])}"))
        elif item is not None and not all(isinstance(v, item) for v in given[name]):
            findings.append(Finding(source, line_of(name), f"[{table}] {name} must be "
                                    f"a list of {type_name(item).removeprefix('a ')}s"))
        else:
            values[name] = _convert(given[name], kind)
        if name not in values and required:  # a placeholder, so every problem is gathered
            values[name] = kind()
    return cls(**values), findings


def coerce_text(value: str, hint: Any) -> Any:
    """A setting given as text (an environment variable) as its field's type; ValueError if not."""
    kind, _ = _kind(hint)
    if kind is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(value)
    if kind is tuple:
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return kind(value)


def field_types(cls: type) -> Mapping[str, Any]:
    """Each field's type annotation, by name."""
    return typing.get_type_hints(cls)
