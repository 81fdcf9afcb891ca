"""Turn a resolved post's Markdown blocks into HTML and plain text, once per post.

Each block (shared, or seen only by some goals) is converted once; an edition is then
just the blocks its goal may see, joined. Merge fields become slot markers that survive
Markdown, Jinja2 and MJML untouched and are cut out afterwards (see model.split_slots).
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import markdown
from markdown.extensions.extra import ExtraExtension
from markdown.extensions.sane_lists import SaneListExtension

from publisher.content.syntax import EXERCISE_LINK, MERGE_FIELD, map_prose, merge_field
from publisher.model import Catalogue, Resolved, Slot


class SlotTable:
    """Hands out one marker per distinct (name, default) slot."""

    def __init__(self) -> None:
        self._index: dict[Slot, int] = {}
        # A fresh token per table, so no text an author writes can pass for a marker.
        self._token = secrets.token_hex(6)
        self.pattern = re.compile(rf"ZZSLOT(\d+)T{self._token}ZZ")

    def marker(self, name: str, default: str = "") -> str:
        """The marker text standing for this slot until the edition is cut into parts."""
        slot = Slot(name, default)
        if slot not in self._index:
            self._index[slot] = len(self._index)
        return f"ZZSLOT{self._index[slot]}T{self._token}ZZ"

    @property
    def slots(self) -> tuple[Slot, ...]:
        """Slots in marker order."""
        return tuple(self._index)


@dataclass(frozen=True)
class Chunk:
    """One block converted: the HTML and plain text, and which goals see it."""

    html: str
    text: str
    goals: tuple[str, ...] | None


def _escape_link_text(text: str) -> str:
    return re.sub(r"([\[\]\\*_`])", r"\\\1", text)


def _expand(text: str, table: SlotTable, catalogue: Catalogue,
            url_for: Callable[[str], str]) -> str:
    """Plain Markdown from a block, in one pass over its prose: merge fields become slot
    markers, then `[[slug]]` links become Markdown links to the exercise."""
    def marker(match: re.Match[str]) -> str:
        field = merge_field(match.group(1))
        if field is None:  # resolve already refused these; keep the text as written
            return match.group(0)
        return table.marker(*field)

    def link(match: re.Match[str]) -> str:
        exercise = catalogue.get(match.group(1))
        if exercise is None:
            return match.group(0)
        # The name is text, not markup: Markdown would pass its HTML through raw.
        name = html.escape(exercise.name, quote=False)
        return f"[{_escape_link_text(name)}]({url_for(exercise.slug)})"

    return map_prose(text, lambda prose, _: EXERCISE_LINK.sub(link, MERGE_FIELD.sub(marker,
                                                                                    prose)))


_MD_LINK = re.compile(r"!?\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_STRONG = re.compile(r"(\*\*|__)(.+?)\1")


def markdown_to_text(source: str) -> str:
    """Markdown reads well as plain text; only links and bold need undoing."""
    # Link text may hold entities (an exercise name is escaped for the HTML); text shows them.
    text = _MD_LINK.sub(lambda m: f"{html.unescape(m.group(1))} ({m.group(2)})"
                        if m.group(1) else m.group(2), source)
    text = _STRONG.sub(r"\2", text)
    return re.sub(r"\\([\[\]\\*_`])", r"\1", text)


def new_markdown() -> markdown.Markdown:
    """A Markdown converter with the extensions posts and exercises may use: "extra"
    (tables, footnotes, fenced code, attribute lists…) and "sane_lists"."""
    # Instances, not names: naming them makes Markdown scan every installed package's
    # entry points (importlib.metadata), 50 ms of a 0.5 s rebuild.
    return markdown.Markdown(extensions=[ExtraExtension(), SaneListExtension()],
                             output_format="html")


def convert(md: markdown.Markdown, source: str) -> str:
    """Convert Markdown to HTML with a reused converter."""
    md.reset()
    return md.convert(source)


def convert_blocks(resolved: Resolved, table: SlotTable, url_for: Callable[[str], str],
                   md: markdown.Markdown | None = None) -> tuple[Chunk, ...]:
    """Convert each block of a post once; exercise links point where url_for says."""
    md = md or new_markdown()
    chunks = []
    for block in resolved.blocks:
        source = _expand(block.markdown, table, resolved.catalogue, url_for)
        chunks.append(Chunk(html=convert(md, source), text=markdown_to_text(source).strip(),
                            goals=block.goals))
    return tuple(chunks)


def for_goal(chunks: tuple[Chunk, ...], goal: str) -> tuple[Chunk, ...]:
    """The chunks one goal's edition shows."""
    return tuple(c for c in chunks if c.goals is None or goal in c.goals)
