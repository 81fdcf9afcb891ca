"""From a file's header and the command's options to a plan: the format, which column feeds
which field, the status and goal rows get when they have none. Nothing is imported from a
file whose header or options are wrong."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from publisher.arrivals.base import (
    FIELDS,
    RACE_READERS,
    Format,
    column_key,
    first_word,
    status_reader,
)
from publisher.arrivals.goals import GoalMatcher
from publisher.arrivals.registry import BY_NAME, FORMATS, detect
from publisher.arrivals.runletter import RUNLETTER, RUNLETTER_STATUS
from publisher.emails import show_value
from publisher.errors import Finding, RunletterError, suggest
from publisher.store import STATUSES


@dataclass(frozen=True)
class ArrivalOptions:
    """What `subscribers import` was asked: --from, --status, --goal, --map, --dry-run,
    --enrol."""

    source: str = "auto"
    status: str | None = None
    goal: str | None = None
    maps: tuple[str, ...] = ()
    dry_run: bool = False
    enrol: bool = False


class Feed(NamedTuple):
    """Header columns (by index, in order of preference) that feed one field."""

    indexes: tuple[int, ...]
    field: str
    read: Callable[[str], object]
    blank: bool = False


@dataclass(frozen=True)
class Plan:
    """How one file is read."""

    format: Format
    how: str  # "from the header", "--from kit", …
    header: tuple[str, ...]
    feeds: tuple[Feed, ...]
    consent_source: str
    file_status: str | None = None
    kind: str | None = None
    default_status: str | None = None
    default_goal: str | None = None

    @property
    def mapping(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Each column that is read, with the fields it feeds."""
        fed: dict[int, list[str]] = {}
        for feed in self.feeds:
            for index in feed.indexes:
                fed.setdefault(index, [])
                if feed.field not in fed[index]:
                    fed[index].append(feed.field)
        return tuple((self.header[i], tuple(fed[i])) for i in sorted(fed))

    @property
    def ignored(self) -> tuple[str, ...]:
        """The columns nothing is read from."""
        used = {i for feed in self.feeds for i in feed.indexes}
        return tuple(name for i, name in enumerate(self.header) if i not in used)


def make_plan(header: list[str], options: ArrivalOptions, file_name: str, shown: str,
              goals: GoalMatcher) -> Plan:
    """The plan for a file with this header, or a RunletterError saying what is wrong."""
    if not header or not any(h.strip() for h in header):
        raise RunletterError(Finding(shown, 1, "no header row; the first line must name the "
                                     "columns, e.g. email,first_name,goal,tags,status"))
    check_status_option(options.status)
    keys = [column_key(h) for h in header]
    overrides = parse_maps(options.maps, header, keys, shown)
    fmt, how = choose(options.source, frozenset(keys), bool(overrides))
    if fmt.strict and not overrides:
        check_strict(header, keys, shown, hint=options.source == "auto")
    feeds = tuple(_feeds(fmt, keys, overrides))
    if not any(f.field == "email" for f in feeds):
        looked = " or ".join(f"'{k}'" for c in fmt.columns if c.field == "email" for k in c.keys)
        raise RunletterError(Finding(shown, 1, f"the header has no {looked} column; name the "
                                     "address column with --map \"COLUMN=email\""))
    file_status, kind = _kind(fmt, frozenset(keys), file_name, options.status, shown)
    return Plan(format=fmt, how=how, header=tuple(header), feeds=feeds,
                consent_source=f"import:{fmt.name}:{file_name}", file_status=file_status,
                kind=kind, default_status=options.status,
                default_goal=_default_goal(options.goal, goals))


def choose(source: str, keys: frozenset[str], mapped: bool) -> tuple[Format, str]:
    """The format named with --from, or the one the header shows."""
    if source != "auto":
        if source.lower() not in BY_NAME:
            raise RunletterError(f"--from {show_value(source)}: unknown format"
                                 + suggest(source.lower(), BY_NAME)
                                 + f"; formats: auto, {', '.join(BY_NAME)}")
        return BY_NAME[source.lower()], f"--from {source.lower()}"
    found = detect(keys)
    if found is not None:
        return found, "from the header"
    # No tool's columns: Runletter's own layout, with the columns --map names.
    return RUNLETTER, "columns named with --map" if mapped else "from the header"


def parse_maps(maps: tuple[str, ...], header: list[str], keys: list[str],
               shown: str) -> dict[int, str]:
    """--map "COLUMN=field" options as {column index: field}."""
    out: dict[int, str] = {}
    for given in maps:
        column, sep, written = given.rpartition("=")
        target = written.strip().lower()
        if not sep or not column.strip():
            raise RunletterError(f"--map {show_value(given)}: write it as "
                                 "\"COLUMN=field\", e.g. --map \"Race Distance=goal\"")
        if target not in FIELDS:
            if column_key(target) in keys and column_key(column) in FIELDS:
                raise RunletterError(f"--map {show_value(given)}: the column comes first "
                                     f"(did you mean --map \"{written.strip()}={column}\"?)")
            raise RunletterError(f"--map {show_value(given)}: unknown field "
                                 f"{show_value(target)}" + suggest(target, FIELDS)
                                 + f"; fields: {', '.join(FIELDS)}")
        index = _column_index(column, header, keys, shown, given)
        if target in out.values() or index in out:
            raise RunletterError(f"--map {show_value(given)}: that column or field is "
                                 "already mapped")
        out[index] = target
    return out


def _column_index(column: str, header: list[str], keys: list[str], shown: str,
                  given: str) -> int:
    if column in header:
        return header.index(column)
    if column_key(column) in keys:
        return keys.index(column_key(column))
    raise RunletterError(Finding(shown, 1, f"--map {show_value(given)}: no column "
                                 f"{show_value(column)}" + suggest(column, header)
                                 + f"; columns: {', '.join(header)}"))


def check_strict(header: list[str], keys: list[str], shown: str, hint: bool) -> None:
    """Runletter's own layout: every column known, none twice, an email column."""
    if hint and "email" not in keys:
        raise RunletterError(_unknown_layout(header, keys, shown))
    allowed = RUNLETTER.columns
    names = tuple(k for c in allowed for k in c.keys)
    findings: list[Finding] = []
    for number, (name, key) in enumerate(zip(header, keys, strict=True), start=1):
        if not key:
            findings.append(Finding(shown, 1, f"column {number} has no name in the header"))
        elif key not in names:
            findings.append(Finding(shown, 1, f"unknown column '{name.strip().lower()}'"
                                    + suggest(name.strip().lower(), names)
                                    + f"; columns: {', '.join(names[:5])}"))
        elif keys.index(key) != number - 1:
            findings.append(Finding(shown, 1, f"column '{key}' appears twice in the header"))
    if "email" not in keys:
        findings.append(Finding(shown, 1, "the header has no 'email' column"))
    if findings:
        raise RunletterError([*findings, Finding(shown, None, "nothing imported")])


def _unknown_layout(header: list[str], keys: list[str], shown: str) -> Finding:
    """A header with no tool's columns and no 'email': say how to name its columns."""
    address = next((name for name, key in zip(header, keys, strict=True) if "mail" in key),
                   "COLUMN")
    return Finding(shown, 1, "not a layout runletter knows (it reads "
                   + ", ".join(f.name for f in FORMATS) + f"; columns here: {', '.join(header)})"
                   f"; name the columns with --map, e.g. --map \"{address}=email\", or pass "
                   "--from FORMAT (nothing imported)")


def _feeds(fmt: Format, keys: list[str], overrides: dict[int, str]):
    """The format's columns found in the header, after those --map names (which win)."""
    # A first-name column wins over a full-name one, mapped or not.
    for index, target in sorted(overrides.items(), key=lambda item: item[1] == "name"):
        yield Feed((index,), "first_name" if target == "name" else target,
                     _mapped_reader(fmt, target), blank=False)
    taken = {"first_name" if t == "name" else t for t in overrides.values()}
    for column in fmt.columns:
        indexes = tuple(keys.index(k) for k in column.keys if k in keys)
        if indexes and column.field not in taken:
            yield Feed(indexes, column.field, column.read, column.blank)


def _mapped_reader(fmt: Format, target: str) -> Callable[[str], object]:
    """How a column --map names is read: with the format's own tags and statuses."""
    if target == "status":
        if not fmt.statuses:  # Mailchimp: the file, not a column, says the status
            return RUNLETTER_STATUS
        return status_reader("" if fmt is RUNLETTER else fmt.name, fmt.statuses)
    return {"tags": fmt.tags, "name": first_word, **RACE_READERS}.get(target, str.strip)


def _kind(fmt: Format, keys: frozenset[str], file_name: str, status: str | None,
          shown: str) -> tuple[str | None, str | None]:
    """The status a file gives all its rows, and what the file is (Mailchimp's kinds)."""
    if fmt.kind is None:
        return None, None
    file_status, kind, refusal = fmt.kind(keys, file_name)
    if refusal and status in (None, "active"):
        raise RunletterError(Finding(shown, None, refusal))
    return file_status, kind


def _default_goal(goal: str | None, goals: GoalMatcher) -> str | None:
    if goal is None:
        return None
    slug = goals.match(goal)
    if slug is None:
        raise RunletterError(f"--goal: {goals.problem(goal)}")
    return slug


def check_status_option(status: str | None) -> None:
    """--status must be a store status."""
    if status is not None and status not in STATUSES:
        raise RunletterError(f"--status {show_value(status)}: use one of: {', '.join(STATUSES)}")
