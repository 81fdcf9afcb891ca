"""`runletter audience`: how many active readers each segment has."""

from __future__ import annotations

from dataclasses import dataclass

from publisher.project import Project
from publisher.store import Store


@dataclass(frozen=True)
class Audience:
    """Active readers per segment, in goals.toml order, then goals it does not list."""

    segments: tuple[tuple[str, int], ...]
    unlisted: tuple[tuple[str, int], ...]  # goals readers have that goals.toml lacks

    @property
    def total(self) -> int:
        """Every active reader."""
        return sum(n for _, n in self.segments) + sum(n for _, n in self.unlisted)


def audience(project: Project) -> Audience:
    """Count the active readers of each segment."""
    with Store.open(project.config.store_url()) as store:
        counts = store.count_by_goal("active")
    segments = tuple((slug, counts.pop(slug, 0)) for slug in project.goals.slugs)
    return Audience(segments=segments, unlisted=tuple(sorted(counts.items())))
