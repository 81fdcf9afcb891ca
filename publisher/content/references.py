"""Check every reference a post makes before anything renders: pure, no I/O.

A post names goals (audience, `::: only` blocks), a topic, exercises (cards and `[[slug]]`
links) and merge fields. Each must exist; each miss is a Finding with the line and the
closest valid name.
"""

from __future__ import annotations

from collections.abc import Iterable

from publisher.content.syntax import (
    BLOCK_CLOSE,
    BLOCK_FENCE,
    EXERCISE_LINK,
    MERGE_FIELD,
    MERGE_FIELDS,
    ONLY_OPEN,
    is_code_fence,
    map_prose,
    merge_field,
)
from publisher.errors import Finding, RunletterError, suggest
from publisher.model import EVERYONE, Block, Catalogue, Goals, Post, Resolved


class _Fences:
    """Walks a body's lines, cutting Blocks at `::: only` fences and noting bad fences."""

    def __init__(self, post: Post):
        self.where = post.source.display
        self.findings: list[Finding] = []
        self.blocks: list[Block] = []
        self.current: list[str] = []
        self.start = post.source.body_line
        self.goals: tuple[str, ...] | None = None
        self.open_line = 0

    def flush(self, next_start: int) -> None:
        """End the block gathered so far (blank leading lines are not part of it)."""
        lead = 0
        while lead < len(self.current) and not self.current[lead].strip():
            lead += 1
        text = "\n".join(self.current[lead:]).rstrip()
        if text or self.goals:
            self.blocks.append(Block(markdown=text + "\n", line=self.start + lead,
                                     goals=self.goals,
                                     opened=self.open_line if self.goals else 0))
        self.current = []
        self.start = next_start

    def problem(self, number: int, message: str) -> None:
        self.findings.append(Finding(self.where, number, message))

    def fence(self, line: str, number: int) -> None:
        """A `:::` line: open a goal block, close one, or report it."""
        opening = ONLY_OPEN.match(line)
        if opening:
            if self.goals is not None:
                self.problem(number, "'::: only' block opened inside another (opened on line "
                             f"{self.open_line}); close it with ':::' first")
                return
            named = tuple(opening.group(1).replace(",", " ").split())
            if not named:
                self.problem(number, "'::: only' names no goal; write '::: only marathon ultra'")
            self.flush(number + 1)
            self.goals, self.open_line = named, number
        elif line.strip() == BLOCK_CLOSE:
            if self.goals is None:
                self.problem(number, "':::' closes no block; open one with '::: only GOAL'")
                return
            self.flush(number + 1)
            self.goals = None
        else:
            self.problem(number, f"unknown block '{line.strip()}'; "
                         "the only block is '::: only GOAL…'")

    def finish(self) -> None:
        """Close the body: an unclosed goal block is reported where it opened."""
        if self.goals is not None:
            self.problem(self.open_line, "'::: only' block is never closed; "
                         "add a ':::' line after it")
            self.goals = None
        self.flush(0)


def split_blocks(post: Post) -> tuple[tuple[Block, ...], list[Finding]]:
    """Cut the body at `::: only GOAL…` / `:::` fences into Blocks; report bad fences."""
    fences = _Fences(post)
    in_code = False
    for offset, line in enumerate(post.body.split("\n")):
        if is_code_fence(line):
            in_code = not in_code
        if in_code or not BLOCK_FENCE.match(line):
            fences.current.append(line)
        else:
            fences.fence(line, post.source.body_line + offset)
    fences.finish()
    return tuple(fences.blocks), fences.findings


def _goal_findings(where: str, line: int | None, named: Iterable[str], goals: Goals,
                   what: str) -> list[Finding]:
    return [Finding(where, line, f"unknown goal '{g}' in {what}" + suggest(g, goals.slugs)
                    + f"; goals are: {', '.join(goals.slugs)}")
            for g in named if goals.get(g) is None]


def check_body(block: Block, where: str, catalogue: Catalogue) -> list[Finding]:
    """Inline `[[slug]]` links and `{{ merge }}` fields in one block, each with its line."""
    findings: list[Finding] = []

    def check(line: str, offset: int) -> str:
        if "[[" not in line and "{{" not in line:
            return line
        number = block.line + offset
        for match in EXERCISE_LINK.finditer(line):
            slug = match.group(1)
            if catalogue.get(slug) is None:
                findings.append(Finding(where, number, f"unknown exercise '{slug}'"
                                        + suggest(slug, catalogue.exercises)))
        for match in MERGE_FIELD.finditer(line):
            field = merge_field(match.group(1))
            if field is None:
                findings.append(Finding(where, number, f"merge field '{match.group(0)}' is not "
                                        "understood; write {{ first_name | default(\"runner\") }}"))
            elif field[0] not in MERGE_FIELDS:
                findings.append(Finding(where, number, f"unknown merge field "
                                        f"'{field[0]}'" + suggest(field[0], MERGE_FIELDS)
                                        + f"; fields are: {', '.join(MERGE_FIELDS)}"))
        return line

    map_prose(block.markdown, check)
    return findings


def check_catalogue(catalogue: Catalogue, goals: Goals) -> list[Finding]:
    """Progression/regression slugs and dose goals across the whole catalogue."""
    findings: list[Finding] = []
    for exercise in catalogue.exercises.values():
        src = exercise.source
        for key in ("progressions", "regressions"):
            for i, slug in enumerate(getattr(exercise, key)):
                if slug == exercise.slug:
                    findings.append(Finding(src.display, src.line(f"{key}[{i}]"),
                                            f"'{slug}' lists itself in {key}"))
                elif catalogue.get(slug) is None:
                    findings.append(Finding(src.display, src.line(f"{key}[{i}]"),
                                            f"unknown {key[:-1]} slug '{slug}'"
                                            + suggest(slug, catalogue.exercises)))
        for goal in exercise.dose:
            if goal != "default" and goals.get(goal) is None:
                findings.append(Finding(src.display, src.line(f"dose.{goal}"),
                                        f"dose for unknown goal '{goal}'"
                                        + suggest(goal, (*goals.slugs, "default"))))
    return findings


def resolve(post: Post, catalogue: Catalogue, goals: Goals,
            topics: Iterable[str]) -> Resolved:
    """Check every reference of a post; return it Resolved or raise with all findings."""
    where = post.source.display
    src = post.source
    topics = tuple(topics)
    findings: list[Finding] = []
    if post.topic and post.topic not in topics:
        findings.append(Finding(where, src.line("topic"), f"unknown topic '{post.topic}'"
                                + suggest(post.topic, topics)
                                + f"; topics in runletter.toml are: {', '.join(topics)}"))
    for i, goal in enumerate(post.audience or ()):
        findings += _goal_findings(where, src.line(f"audience[{i}]"), [goal], goals, "audience")
    for i, slug in enumerate(post.exercises):
        if catalogue.get(slug) is None:
            findings.append(Finding(where, src.line(f"exercises[{i}]"),
                                    f"unknown exercise '{slug}'"
                                    + suggest(slug, catalogue.exercises)))
    blocks, block_findings = split_blocks(post)
    findings += block_findings
    for block in blocks:
        if block.goals:
            findings += _goal_findings(where, block.opened, block.goals, goals,
                                       "'::: only' block")
        findings += check_body(block, where, catalogue)
    if findings:
        raise RunletterError(findings)
    if post.audience is None:
        audience = goals.items
    else:
        audience = tuple(g for g in goals.items if g.slug in post.audience)
    return Resolved(
        post=post,
        audience=audience,
        topic=post.topic,
        exercises=tuple(catalogue.exercises[s] for s in post.exercises),
        blocks=blocks,
        catalogue=catalogue,
        goals=goals,
    )


__all__ = ["EVERYONE", "check_catalogue", "resolve", "split_blocks"]
