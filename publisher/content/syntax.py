"""The grammar a post's Markdown adds to Markdown, in one place: `::: only GOAL…` blocks,
`[[slug]]` exercise links and `{{ field | default("…") }}` merge fields, and where they count
(prose, not code).

content/references checks what they name; render/markdown turns them into links and slots.
"""

from __future__ import annotations

import re
from collections.abc import Callable

BLOCK_FENCE = re.compile(r"^:::")
ONLY_OPEN = re.compile(r"^:::\s*only\b(.*)$")
BLOCK_CLOSE = ":::"
EXERCISE_LINK = re.compile(r"\[\[\s*([^\]\n]*?)\s*\]\]")
MERGE_FIELD = re.compile(r"\{\{(.*?)\}\}")
MERGE_SYNTAX = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*"
                          r"(?:\|\s*default\(\s*(?:\"([^\"]*)\"|'([^']*)')\s*\)\s*)?$")
# Per reader, filled when a message is addressed (race values are empty for a reader
# without a race: give them a default).
MERGE_FIELDS = ("first_name", "race_name", "race_date", "weeks_to_race")

_CODE_FENCES = ("```", "~~~")
_CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")


def is_code_fence(line: str) -> bool:
    """True for a line that opens or closes fenced code, where the grammar does not apply."""
    return line.lstrip().startswith(_CODE_FENCES)


def merge_field(inner: str) -> tuple[str, str] | None:
    """The (name, default) a merge field's inside `{{ … }}` means, or None if it is not
    understood; the default is "" when none is given."""
    syntax = MERGE_SYNTAX.match(inner)
    if not syntax:
        return None
    default = syntax.group(2) if syntax.group(2) is not None else (syntax.group(3) or "")
    return syntax.group(1), default


def map_prose(markdown: str, fn: Callable[[str, int], str]) -> str:
    """Apply fn(text, line_offset) to prose only: fenced code and `code spans` stay as written,
    so a post can show `[[slug]]` or `{{ first_name }}` as an example."""
    if "`" not in markdown and "~~~" not in markdown:  # no code at all: the common case
        return "\n".join(fn(line, offset) for offset, line in enumerate(markdown.split("\n")))
    out: list[str] = []
    in_code = False
    for offset, line in enumerate(markdown.split("\n")):
        if is_code_fence(line):
            in_code = not in_code
            out.append(line)
            continue
        if in_code:
            out.append(line)
            continue
        pieces, last = [], 0
        for span in _CODE_SPAN.finditer(line):
            pieces.append(fn(line[last:span.start()], offset))
            pieces.append(span.group(0))
            last = span.end()
        pieces.append(fn(line[last:], offset))
        out.append("".join(pieces))
    return "\n".join(out)
