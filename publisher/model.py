"""The author's world as plain frozen data: Goal, Exercise, Catalogue, Post, Edition."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

EVERYONE = "general"  # the fallback segment for readers with no goal


@dataclass(frozen=True)
class Goal:
    """A runner goal that segments the audience (5k, marathon, comeback…)."""

    slug: str
    label: str
    description: str


@dataclass(frozen=True)
class Goals:
    """The goals from subscribers/goals.toml, in the author's order."""

    items: tuple[Goal, ...]
    path: Path = Path("subscribers/goals.toml")

    @property
    def slugs(self) -> tuple[str, ...]:
        """Goal slugs in order."""
        return tuple(g.slug for g in self.items)

    def get(self, slug: str) -> Goal | None:
        """The goal with this slug, or None."""
        return next((g for g in self.items if g.slug == slug), None)

    def __iter__(self):
        return iter(self.items)


@dataclass(frozen=True)
class Source:
    """Where a file's parts are, so an error can name the line."""

    path: Path
    display: str
    key_lines: Mapping[str, int]  # "topic" -> 4, "exercises[2]" -> 7
    body_line: int  # line number of the first body line
    stamp: tuple[int, int] = (0, 0)  # (size, crc32) of the file as read: what rebuilds compare
    front_end: int | None = None  # line of the closing '---', where a missing key would go

    def line(self, key: str) -> int | None:
        """Line of a front matter key (or list item `key[i]`), falling back to the key."""
        if key in self.key_lines:
            return self.key_lines[key]
        return self.key_lines.get(key.split("[", 1)[0])


@dataclass(frozen=True)
class Exercise:
    """One catalogue entry: how to do a move and how much of it each goal needs."""

    slug: str
    name: str
    focus: tuple[str, ...]
    muscles: tuple[str, ...]
    equipment: tuple[str, ...]
    level: str
    dose: Mapping[str, str]
    cues: tuple[str, ...]
    progressions: tuple[str, ...]
    regressions: tuple[str, ...]
    image: str | None
    video: str | None
    body: str
    source: Source

    def dose_for(self, goal: str) -> str | None:
        """The dose for a goal, or the default dose, or None."""
        return self.dose.get(goal) or self.dose.get("default")


@dataclass(frozen=True)
class Catalogue:
    """Every exercise by slug."""

    exercises: Mapping[str, Exercise]

    def get(self, slug: str) -> Exercise | None:
        """The exercise with this slug, or None."""
        return self.exercises.get(slug)

    def __iter__(self):
        return iter(sorted(self.exercises.values(), key=lambda e: e.name.lower()))

    def __len__(self) -> int:
        return len(self.exercises)


@dataclass(frozen=True)
class Post:
    """An article as the author wrote it, front matter validated for shape."""

    slug: str
    title: str
    date: dt.date | None  # None for a sequence step: its time is each reader's own
    topic: str
    audience: tuple[str, ...] | None  # None = every goal
    exercises: tuple[str, ...]
    subject: str
    preheader: str
    summary: str
    status: str
    body: str
    source: Source
    # A scheduled post: a date (each reader at send_hour in their zone) or one aware instant.
    send_at: dt.date | dt.datetime | None = None
    gate: bool = False  # a step with `gate: ready`: its email carries the "ready" link
    calendar: bool = False  # a race-sequence step: its email links the reader's calendar

    @property
    def is_draft(self) -> bool:
        """Drafts render and preview, but never send or appear in the archive."""
        return self.status == "draft"

    @property
    def is_step(self) -> bool:
        """A sequence step (slug '<sequence>/<step>'): mailed, never in the archive."""
        return "/" in self.slug


@dataclass(frozen=True)
class Block:
    """A run of body Markdown, seen by every goal (goals=None) or only by some."""

    markdown: str
    line: int
    goals: tuple[str, ...] | None = None
    opened: int = 0  # line of the '::: only' fence, for goal blocks


@dataclass(frozen=True)
class Resolved:
    """A post whose every reference (goals, topic, exercises, merge fields) is known good."""

    post: Post
    audience: tuple[Goal, ...]
    topic: str
    exercises: tuple[Exercise, ...]
    blocks: tuple[Block, ...]
    catalogue: Catalogue
    goals: Goals

    @property
    def slug(self) -> str:
        """The post's slug."""
        return self.post.slug


@dataclass(frozen=True)
class Slot:
    """A per-recipient hole in an edition, filled when a message is addressed."""

    name: str
    default: str = ""


SLOT_RE = re.compile(r"ZZSLOT(\d+)ZZ")


def split_slots(text: str, slots: tuple[Slot, ...],
                pattern: re.Pattern[str] = SLOT_RE) -> tuple[str | Slot, ...]:
    """Cut rendered text at slot markers (pattern's group 1 is the index) into strings and Slots."""
    parts: list[str | Slot] = []
    last = 0
    for match in pattern.finditer(text):
        parts.append(text[last:match.start()])
        parts.append(slots[int(match.group(1))])
        last = match.end()
    parts.append(text[last:])
    return tuple(p for p in parts if p != "")


def fill(parts: tuple[str | Slot, ...], values: Mapping[str, str], escape: bool) -> str:
    """Join parts with each slot's value (or its default), HTML-escaped when asked."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        else:
            value = values.get(part.name) or part.default
            out.append(html.escape(value, quote=True) if escape else value)
    return "".join(out)


@dataclass(frozen=True)
class Edition:
    """One post rendered for one segment: everything but the recipient's own values."""

    post_slug: str
    goal: str
    subject: str
    preheader: str
    html_parts: tuple[str | Slot, ...]
    text_parts: tuple[str | Slot, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def slots(self) -> frozenset[str]:
        """Names of the merge values this edition needs per recipient."""
        return frozenset(p.name for p in (*self.html_parts, *self.text_parts)
                         if isinstance(p, Slot))

    def html(self, values: Mapping[str, str] | None = None) -> str:
        """The HTML part with merge values filled (defaults when none given)."""
        return fill(self.html_parts, values or {}, escape=True)

    def text(self, values: Mapping[str, str] | None = None) -> str:
        """The plain-text part with merge values filled (defaults when none given)."""
        return fill(self.text_parts, values or {}, escape=False)
