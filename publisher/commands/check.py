"""`runletter check`: every edition of some posts and sequence steps (or all), before anyone
receives one."""

from __future__ import annotations

import re
from dataclasses import dataclass

from publisher.content.sequences import load_sequences, sequence_folders
from publisher.errors import Counted, Finding, RunletterError
from publisher.project import Project
from publisher.render.check import check_posts

# A race field with no `| default(...)`: empty for every reader who has no race.
BARE_RACE_FIELD = re.compile(r"\{\{\s*(race_name|race_date|weeks_to_race)\s*\}\}")


@dataclass(frozen=True)
class Checked(Counted):
    """How many posts and sequence steps were checked, and what was found, errors first."""

    posts: int
    findings: tuple[Finding, ...]
    steps: int = 0


def check(project: Project, names: tuple[str, ...] = (), links: bool = False) -> Checked:
    """Check the named posts, sequences or steps (slugs, paths, SEQ or SEQ/STEP; none: all
    of them); `links` asks each link."""
    findings: list[Finding] = []
    sequences = ()
    try:
        sequences = load_sequences(project.config.content_dir, project.root, project.goals)
    except RunletterError as exc:
        findings.extend(exc.findings)
    posts, steps = _chosen(project, names, sequences,
                           {f.name for f in sequence_folders(project.config.content_dir)})
    findings += check_posts(project, [*posts, *(s.post for s in steps)], online=links)
    findings += sequence_findings([q for q in sequences if any(s in q.steps for s in steps)])
    findings.sort(key=lambda f: f.level != "error")
    return Checked(posts=len(posts), findings=tuple(findings), steps=len(steps))


def _chosen(project: Project, names, sequences, folders: set[str]):
    if not names:
        return list(project.posts()), [s for q in sequences for s in q.steps]
    posts, steps = [], []
    for name in names:
        head = name.strip("/").split("/")[0]
        if head in folders and not name.endswith(".md") or (
                head == "content" and "/sequences/" in name):
            steps += _steps_named(name, sequences)
        else:
            posts.append(project.post(name))
    return posts, steps


def _steps_named(name: str, sequences) -> list:
    parts = [p for p in name.removesuffix(".md").split("/") if p and p != "content"]
    if parts and parts[0] == "sequences":
        parts = parts[1:]
    for sequence in sequences:
        if sequence.slug == parts[0]:
            if len(parts) == 1:
                return list(sequence.steps)
            step = sequence.step(parts[-1])
            if step is None:
                raise RunletterError(f"no step '{parts[-1]}' in sequence '{sequence.slug}'")
            return [step]
    return []  # the sequence did not load: its errors are already among the findings


def sequence_findings(sequences) -> list[Finding]:
    """What works but is likely a mistake in a sequence: a gate with no step after it, a
    signup sequence every existing reader would join, race values with no default."""
    found = []
    for sequence in sequences:
        last = sequence.steps[-1]
        if last.gate:
            found.append(Finding(last.post.source.display, last.post.source.line("gate"),
                                 "'gate: ready' on the last step: there is no next phase for "
                                 "it to open", "warning"))
        if sequence.anchor == "signup" and sequence.since is None:
            found.append(Finding(sequence.display, None, "no 'since': every reader who "
                                 "signed up before today joins this sequence too (an 'on "
                                 "signup' step reaches them at once); add since = "
                                 "YYYY-MM-DD to enrol only new readers", "warning"))
        if sequence.anchor == "signup":
            for step in sequence.steps:
                for number, line in enumerate(step.post.body.split("\n"),
                                              step.post.source.body_line):
                    if match := BARE_RACE_FIELD.search(line):
                        found.append(Finding(
                            step.post.source.display, number, f"{{{{ {match[1]} }}}} in a "
                            "signup sequence: readers without a race see nothing there; add "
                            f"| default(\"…\")", "warning"))
    return found
