"""A Markdown file with YAML front matter, read into a Document whose every key knows its line,
and the shape checks every kind of document shares (types, choices, slugs, control characters).

Posts and exercises (`load`) are documents; so will be a sequence's steps.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import frontmatter
import yaml

from publisher.errors import Finding, RunletterError, display_path, suggest
from publisher.model import Source

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@functools.cache
def _yaml() -> tuple[Any, type, type]:
    """PyYAML, its fastest safe loader, and a loader that leaves dates as text.

    Dates stay text so `read_post` checks them with a line number (PyYAML's own date
    parsing crashes on 2026-02-30 instead of reporting it).
    """
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when the wheel has it
    loader = type("FrontMatterLoader", (base,), {})
    loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return yaml, base, loader


@dataclass(frozen=True)
class Document:
    """A Markdown file split into its front matter (with key lines) and its body."""

    meta: dict[str, Any]
    body: str
    source: Source


def _key_lines(front: str, first_line: int) -> dict[str, int]:
    """Map each top-level key (and each list item as key[i]) to its line in the file."""
    lines: dict[str, int] = {}
    yaml, base, _ = _yaml()
    try:
        node = yaml.compose(front, Loader=base)
    except yaml.YAMLError:
        return lines
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key_node, value_node in node.value:
        key = str(key_node.value)
        lines[key] = key_node.start_mark.line + first_line
        if isinstance(value_node, yaml.SequenceNode):
            for i, item in enumerate(value_node.value):
                lines[f"{key}[{i}]"] = item.start_mark.line + first_line
        elif isinstance(value_node, yaml.MappingNode):
            for sub_key, _ in value_node.value:
                lines[f"{key}.{sub_key.value}"] = sub_key.start_mark.line + first_line
    return lines


def read_document(path: Path, root: Path, cache: dict | None = None) -> Document:
    """Split a Markdown file with YAML front matter; raise a Finding-bearing error if broken.

    With a cache (path -> (size and checksum, parts)), an unchanged file is not parsed again.
    """
    shown = display_path(path, root)
    raw = path.read_bytes()
    # What the file holds, not when it was written: an edit within one clock tick that
    # keeps the size would fool an mtime, not a checksum.
    stamp = (len(raw), zlib.crc32(raw))
    if cache is not None:
        hit = cache.get(str(path))
        if hit is not None and hit[0] == stamp and len(hit[1]) == 5:
            meta, body, key_lines, body_line, front_end = hit[1]
            return Document(meta=meta, body=body, source=Source(
                path=path, display=shown, key_lines=MappingProxyType(key_lines),
                body_line=body_line, stamp=stamp, front_end=front_end))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RunletterError(Finding(shown, None, f"not UTF-8 text ({exc.reason}); "
                                     "save the file as UTF-8")) from None
    text = text.replace("\r\n", "\n")
    yaml, _, loader = _yaml()
    handler = frontmatter.YAMLHandler()
    if not handler.detect(text):
        raise RunletterError(Finding(shown, 1, "no front matter: start the file with a '---' "
                                     "line, the YAML keys, and another '---' line"))
    try:
        front, body = handler.split(text)
    except ValueError:
        raise RunletterError(Finding(shown, 1, "front matter is not closed: "
                                     "add a '---' line after the last key")) from None
    try:
        # Before anything is built: a few lines of nested aliases expand to billions of
        # values for whatever walks them (the "billion laughs"), so none is allowed.
        alias = _first_alias(yaml, front, loader)
        if alias is not None:
            raise RunletterError(Finding(shown, alias.start_mark.line + 1, "YAML aliases "
                                         f"(*{alias.anchor}) are not allowed in front "
                                         "matter; write the value out"))
        meta = yaml.load(front, Loader=loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise RunletterError(Finding(shown, line, f"front matter is not valid YAML: {problem}")
                             ) from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise RunletterError(Finding(shown, 2, "front matter must be 'key: value' lines"))
    # The body is the file's tail; count the lines before it so errors point home.
    body_start = len(text) - len(body)
    lead = len(body) - len(body.lstrip("\n"))
    key_lines = _key_lines(front, 1)
    body_line = text[: body_start + lead].count("\n") + 1
    front_end = _closing_line(text)
    if cache is not None:
        cache[str(path)] = (stamp, (meta, body.lstrip("\n"), key_lines, body_line, front_end))
    source = Source(path=path, display=shown, key_lines=MappingProxyType(key_lines),
                    body_line=body_line, stamp=stamp, front_end=front_end)
    return Document(meta=meta, body=body.lstrip("\n"), source=source)


def _first_alias(yaml: Any, front: str, loader: type) -> Any:
    """The first alias event (`*name`) of the front matter, or None."""
    return next((event for event in yaml.parse(front, Loader=loader)
                 if isinstance(event, yaml.AliasEvent)), None)


def _closing_line(text: str) -> int | None:
    """The line of the '---' that closes the front matter (the opening one is line 1)."""
    for number, line in enumerate(text.split("\n")[1:], 2):
        if re.fullmatch(r"-{3,}\s*", line):
            return number
    return None


class Checker:
    """Collects findings while reading one document's front matter."""

    def __init__(self, doc: Document, allowed: tuple[str, ...]):
        self.doc = doc
        self.findings: list[Finding] = []
        for key in doc.meta:
            if key not in allowed:
                self.error(str(key), f"unknown front matter key '{key}'" + suggest(key, allowed)
                           + f"; allowed keys: {', '.join(allowed)}")

    def error(self, key: str, message: str) -> None:
        self.findings.append(Finding(self.doc.source.display, self.doc.source.line(key), message))

    def missing(self, key: str, message: str) -> None:
        """A required key that is absent, at the closing '---': where to add it."""
        source = self.doc.source
        self.findings.append(Finding(source.display, source.line(key) or source.front_end,
                                     message))

    def text(self, key: str, required: bool = False, default: str = "") -> str:
        value = self.doc.meta.get(key)
        if value is None:
            if required:
                self.missing(key, f"missing required key '{key}'")
            return default
        if isinstance(value, bool | dict | list):
            self.error(key, f"'{key}' must be text")
            return default
        return str(value).strip()

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.doc.meta.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            self.error(key, f"'{key}' must be a list, e.g. {key}: [a, b]")
            return ()
        return tuple(str(v).strip() for v in value)

    def slugs(self, key: str) -> tuple[str, ...]:
        items = self.strings(key)
        for i, item in enumerate(items):
            if not SLUG_RE.match(item):
                self.error(f"{key}[{i}]", f"'{item}' in '{key}' is not a slug "
                           "(lowercase letters, digits and hyphens)")
        return items

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(key, required=default is None, default=default or "")
        if value and value not in choices:
            self.error(key, f"'{key}' is '{value}'; use one of: {', '.join(choices)}"
                       + suggest(value, choices))
        return value


# Characters XML 1.0 forbids: MJML and Atom cannot carry them, and nobody types them on purpose.
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
HEADER_KEYS = ("title", "subject")  # a post's values that go in an email header


def _texts(key: str, value: Any) -> list[tuple[str, str]]:
    """(where, text) for every string in a front matter value: 'cues[1]', 'dose.marathon'."""
    if isinstance(value, str):
        return [(key, value)]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _texts(f"{key}.{k}", v)]
    if isinstance(value, list):
        return [t for i, v in enumerate(value) for t in _texts(f"{key}[{i}]", v)]
    return []


def control_findings(doc: Document, skip: Collection[str] = ()) -> list[Finding]:
    """Each front matter value and body line holding a control character, on its line
    (keys in `skip` are reported otherwise)."""
    src = doc.source
    findings = [Finding(src.display, src.line(where) or src.line(str(key)),
                        f"'{key}' holds the control character U+{ord(found[0]):04X}, which "
                        "email and feeds cannot carry; delete it")
                for key, value in doc.meta.items() if key not in skip
                for where, text in _texts(str(key), value) if (found := CONTROL.search(text))]
    if CONTROL.search(doc.body):
        for offset, line in enumerate(doc.body.split("\n")):
            if found := CONTROL.search(line):
                findings.append(Finding(src.display, src.body_line + offset,
                                        f"the control character U+{ord(found[0]):04X} cannot "
                                        "go in an email or a feed; delete it"))
    return findings


def check_slug(path: Path, shown: str, kind: str) -> list[Finding]:
    if SLUG_RE.match(path.stem):
        return []
    return [Finding(shown, None, f"file name '{path.name}' is not a valid {kind} slug; "
                    "rename it with lowercase letters, digits and hyphens")]
