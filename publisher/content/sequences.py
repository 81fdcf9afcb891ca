"""Sequences: `content/sequences/<sequence>/sequence.toml` and one Markdown file per step,
read into plain data with their shape checked (goals and exercises are resolved like a
post's, in `resolve`).

A step is a Post whose slug is `<sequence>/<step>` (the ledger's key for it), with no date
and the sequence's audience, plus its `when` and an optional `gate: ready`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from publisher import clock
from publisher.content.documents import SLUG_RE, Checker, read_document
from publisher.content.posts import contained, document_paths, post_from
from publisher.content.when import PREVIOUS, RACE, SIGNUP, When, parse_when
from publisher.errors import Finding, RunletterError, display_path, suggest
from publisher.model import Goals, Post

ANCHORS = (RACE, SIGNUP)
SEQUENCE_KEYS = ("name", "anchor", "audience", "since")
STEP_KEYS = ("title", "topic", "exercises", "subject", "preheader", "summary", "status",
             "when", "gate")
GATES = ("ready",)


@dataclass(frozen=True)
class Step:
    """One email of a sequence: its post, when it goes, and whether the next one waits for
    the reader to say they are ready."""

    post: Post
    when: When
    gate: bool

    @property
    def key(self) -> str:
        """`<sequence>/<step>`: the step's name in the ledger, reports and links."""
        return self.post.slug

    @property
    def name(self) -> str:
        """The step's file name without .md."""
        return self.post.slug.split("/", 1)[1]


@dataclass(frozen=True)
class Sequence:
    """A series of steps timed from each reader's race date or signup."""

    slug: str
    name: str
    anchor: str
    audience: tuple[str, ...] | None  # None = every goal
    since: dt.date | None
    steps: tuple[Step, ...]
    path: Path  # sequence.toml
    display: str

    @cached_property
    def fingerprint(self) -> str:
        """Changes whenever what times a step changes, so readers are looked at again."""
        parts = [self.anchor, str(self.since), ",".join(self.audience or ())]
        parts += [f"{s.key}:{s.when.anchor}{s.when.days}:{s.when.instant}:{s.gate}:"
                  f"{s.post.status}" for s in self.steps]
        return hashlib.blake2s("|".join(parts).encode(), digest_size=8).hexdigest()

    def step(self, name: str) -> Step | None:
        """A step by file name (with or without .md) or key."""
        name = name.removesuffix(".md").split("/")[-1]
        return next((s for s in self.steps if s.name == name), None)


def sequence_folders(content_dir: Path) -> list[Path]:
    """Each folder under content/sequences/ (a README or `_`-prefixed folder is not one)."""
    base = content_dir / "sequences"
    if not base.is_dir():
        return []
    return [p for p in sorted(base.iterdir())
            if p.is_dir() and not p.name.startswith(("_", "."))]


def load_sequences(content_dir: Path, root: Path, goals: Goals,
                   cache: dict | None = None) -> tuple[Sequence, ...]:
    """Read every sequence, gathering all errors before raising."""
    found, findings = [], []
    for folder in sequence_folders(content_dir):
        try:
            found.append(read_sequence(folder, root, goals, cache))
        except RunletterError as exc:
            findings.extend(exc.findings)
    if findings:
        raise RunletterError(findings)
    return tuple(found)


def read_sequence(folder: Path, root: Path, goals: Goals,
                  cache: dict | None = None) -> Sequence:
    """One sequence folder: its sequence.toml and its steps, in file-name order."""
    path = folder / "sequence.toml"
    shown = display_path(path, root)
    if not SLUG_RE.match(folder.name):
        raise RunletterError(Finding(display_path(folder, root), None, "a sequence folder's "
                                     "name is its slug: lowercase letters, digits and hyphens"))
    content_dir = folder.parent.parent
    if outside := contained("sequence file", path, content_dir, root):
        raise RunletterError(outside)
    text, data = _read_toml(path, shown)
    findings: list[Finding] = []

    def problem(key: str | None, message: str) -> None:
        findings.append(Finding(shown, _line(text, key) if key else None, message))

    name, anchor, since = _settings(data, folder.name, problem)
    audience = _audience(data, goals, problem)
    steps = []
    for step_path in document_paths(folder):
        if outside := contained("step", step_path, content_dir, root):
            findings.append(outside)
            continue
        try:
            steps.append(read_step(step_path, root, folder.name, audience, anchor, cache))
        except RunletterError as exc:
            findings.extend(exc.findings)
    if not steps and not findings:
        problem(None, "has no steps; add one Markdown file per email (01-….md, 02-….md)")
    if not findings:  # a step that did not load would make the order look wrong
        findings.extend(_order_findings(steps, anchor))
    if findings:
        raise RunletterError(findings)
    return Sequence(slug=folder.name, name=name, anchor=anchor, audience=audience,
                    since=since, steps=tuple(steps), path=path, display=shown)


def _line(text: str, key: str) -> int | None:
    """The line of a top-level key in sequence.toml."""
    for number, raw in enumerate(text.splitlines(), 1):
        if re.match(rf"^\s*{re.escape(key)}\s*=", raw):
            return number
    return None


def _read_toml(path: Path, shown: str) -> tuple[str, dict]:
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except FileNotFoundError:
        raise RunletterError(Finding(shown, None, "missing; a sequence folder needs a "
                                     "sequence.toml with name and anchor (\"race\" or "
                                     "\"signup\")")) from None
    except tomllib.TOMLDecodeError as exc:
        raise RunletterError(Finding(shown, getattr(exc, "lineno", None),
                                     f"not valid TOML: {exc}")) from None


def _settings(data: dict, slug: str, problem) -> tuple[str, str, dt.date | None]:
    """name, anchor and since from sequence.toml, each problem reported on its line."""
    for key in data:
        if key not in SEQUENCE_KEYS:
            problem(key, f"unknown key '{key}'" + suggest(key, SEQUENCE_KEYS)
                    + f"; keys are: {', '.join(SEQUENCE_KEYS)}")
    name = data.get("name", slug.replace("-", " ").capitalize())
    if not isinstance(name, str) or not name.strip():
        problem("name", "'name' must be text")
        name = slug
    anchor = data.get("anchor")
    if anchor not in ANCHORS:
        shown = f", not '{anchor}'" + suggest(str(anchor), ANCHORS) if anchor else ""
        problem("anchor" if "anchor" in data else None, "anchor must be \"race\" (timed from "
                f"each reader's race_date) or \"signup\"{shown}")
        anchor = SIGNUP
    since = data.get("since")
    if since is not None:
        if anchor == RACE:
            problem("since", "'since' is for signup sequences; a race sequence enrols "
                    "every reader with a race date")
        if isinstance(since, dt.datetime):
            since = since.date()
        elif not isinstance(since, dt.date):
            problem("since", f"since must be a date such as 2026-12-01, not '{since}'")
            since = None
        if since is not None:
            try:
                clock.check_in_range(since, f"since {since}")
            except clock.OutOfRange as exc:
                problem("since", str(exc))
                since = None
    return name.strip(), anchor, since


def _audience(data: dict, goals: Goals, problem) -> tuple[str, ...] | None:
    raw = data.get("audience")
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(g, str) for g in raw):
        problem("audience", "audience must be a list of goals, e.g. [\"marathon\", \"half\"] "
                "(omit it for every goal)")
        return None
    for goal in raw:
        if goals.get(goal) is None:
            problem("audience", f"unknown goal '{goal}' in audience" + suggest(goal, goals.slugs)
                    + f"; goals are: {', '.join(goals.slugs)}")
    return tuple(raw)


def read_step(path: Path, root: Path, sequence: str, audience: tuple[str, ...] | None,
              anchor: str = SIGNUP, cache: dict | None = None) -> Step:
    """One step file: a post's front matter (no date, no audience) plus `when` and `gate`."""
    doc = read_document(path, root, cache)
    check = Checker(doc, STEP_KEYS)
    for key, why in (("date", "its time is each reader's own: 'when' sets it"),
                     ("audience", "the sequence's audience (sequence.toml) is the step's")):
        if key in doc.meta:
            check.findings = [f for f in check.findings if f.line != doc.source.line(key)]
            check.error(key, f"a step has no '{key}': {why}")
    if not SLUG_RE.match(path.stem):
        check.error("title", f"step file name '{path.name}' must be a slug with .md "
                    "(lowercase letters, digits and hyphens), e.g. 03-eight-weeks-out.md")
    when = When(SIGNUP, 0, instant=True)
    if "when" not in doc.meta:
        check.missing("when", "missing required key 'when', e.g. when: \"3 days after "
                      "signup\" or when: \"8 weeks before race\"")
    else:
        try:
            when = parse_when(doc.meta["when"])
        except ValueError as exc:
            check.error("when", str(exc))
    gate = doc.meta.get("gate")
    if gate is not None and gate not in GATES:
        check.error("gate", f"gate '{gate}' is not known; the only gate is 'gate: ready'"
                    + suggest(str(gate), GATES))
    post = post_from(doc, check, f"{sequence}/{path.stem}", date=None, audience=audience,
                     gate=gate == "ready", calendar=anchor == RACE)
    if check.findings:
        raise RunletterError(check.findings)
    return Step(post=post, when=when, gate=gate == "ready")


def _order_findings(steps: list[Step], anchor: str) -> list[Finding]:
    """`when`s that cannot work where they are: before the first step, or on the wrong anchor."""
    found = []
    for i, step in enumerate(steps):
        src = step.post.source
        where = src.line("when")
        if step.when.anchor == PREVIOUS and i == 0:
            found.append(Finding(src.display, where, f"'when: {step.when.text}' on the first "
                                 "step: there is no previous step; count from "
                                 + ("the race" if anchor == RACE else "signup")))
        elif anchor == SIGNUP and step.when.anchor == RACE:
            found.append(Finding(src.display, where, f"'when: {step.when.text}' in a signup "
                                 "sequence: its readers may have no race date; set anchor = "
                                 "\"race\" in sequence.toml or count from signup"))
        elif anchor == RACE and step.when.anchor == SIGNUP:
            found.append(Finding(src.display, where, f"'when: {step.when.text}' in a race "
                                 "sequence: count from the race (e.g. \"8 weeks before "
                                 "race\") or from the previous step"))
    return found
