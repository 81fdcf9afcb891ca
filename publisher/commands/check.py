"""`runletter check`: every edition of some posts (or all), before anyone receives one."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import Counted, Finding
from ..project import Project


@dataclass(frozen=True)
class Checked(Counted):
    """How many posts were checked, and what was found, errors first."""

    posts: int
    findings: tuple[Finding, ...]


def check(project: Project, names: tuple[str, ...] = (), links: bool = False) -> Checked:
    """Check the named posts (slugs or paths; none: every post); `links` asks each link."""
    from ..check import check_posts

    chosen = [project.post(name) for name in names] if names else list(project.posts())
    return Checked(posts=len(chosen), findings=tuple(check_posts(project, chosen, online=links)))
