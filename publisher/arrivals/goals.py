"""A goal named in an export, matched to goals.toml by slug or label, in any case."""

from __future__ import annotations

import re

from publisher.emails import show_value
from publisher.errors import suggest
from publisher.model import Goals

# Spellings coaches use for the sample goals whose labels in goals.toml read differently.
ALIASES = {"half marathon": "half", "comeback from injury": "comeback", "everyone": "general"}
_SPACE_RE = re.compile(r"[\s_\-]+")


def _plain(text: str) -> str:
    return _SPACE_RE.sub(" ", text.strip().lower()).strip()


class GoalMatcher:
    """Finds the goal a text means: '10K', 'half-marathon', 'Half Marathon' -> a slug."""

    def __init__(self, goals: Goals):
        self.slugs = goals.slugs
        self._labels = [g.label for g in goals]
        self._by_text: dict[str, str] = {}
        for goal in goals:
            self._by_text.setdefault(_plain(goal.slug), goal.slug)
        for goal in goals:
            self._by_text.setdefault(_plain(goal.label), goal.slug)
        for alias, slug in ALIASES.items():
            if slug in self.slugs:
                self._by_text.setdefault(alias, slug)

    def match(self, text: str) -> str | None:
        """The slug `text` names, or None."""
        found = self._by_text.get(text)  # most files repeat a handful of spellings
        if found is None:
            found = self._by_text.get(_plain(text))
            if found is not None:
                self._by_text[text] = found
        return found

    def problem(self, text: str) -> str:
        """Why `text` names no goal, with the closest one."""
        shown = text.strip()
        return (f"unknown goal {show_value(shown)}"
                + suggest(shown.lower(), [*self.slugs, *(x.lower() for x in self._labels)])
                + f"; goals: {', '.join(self.slugs)}")
