"""`runletter build`: the web archive (posts, exercises, goals, feeds) into site/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from publisher.errors import display_path
from publisher.project import Project
from publisher.render.archive import SiteBuilder


@dataclass(frozen=True)
class Built:
    """What a build wrote, and of what."""

    site: str  # the output folder as the author sees it
    posts: int
    exercises: int
    goals: int
    written: int  # files written; unchanged pages are left alone


def build(project: Project, drafts: bool = False, out: Path | None = None) -> Built:
    """Build the archive of every post (drafts only when asked) into site/ or `out`."""
    resolved = project.resolve_all(include_drafts=drafts)
    builder = SiteBuilder(project.config, project.goals, project.catalogue)
    site = builder.build(resolved, out)
    project.save_cache()
    return Built(site=display_path(site, project.root), posts=len(resolved),
                 exercises=len(project.catalogue), goals=len(project.goals.items),
                 written=builder.written)
