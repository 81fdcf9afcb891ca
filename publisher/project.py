"""Open a newsletter project: settings, goals, the catalogue and the posts, checked together."""

from __future__ import annotations

from pathlib import Path

from publisher import clock
from publisher.config import Config, find_root, load_config
from publisher.content.posts import find_post, load_catalogue, load_goals, load_posts, read_post
from publisher.content.references import check_catalogue, resolve
from publisher.errors import Finding, RunletterError
from publisher.model import Catalogue, Goals, Post, Resolved
from publisher.render.cache import cache_path, load_cache, save_cache
from publisher.schedule.rules import published_at


class Project:
    """Everything an author's repo holds, loaded and shape-checked.

    Not a value passed between pipeline stages but the I/O edge that reads posts for them:
    it may keep parsed documents between runs, so it is a plain class, not a frozen record.
    """

    __slots__ = ("config", "goals", "catalogue", "_documents")

    def __init__(self, config: Config, goals: Goals, catalogue: Catalogue,
                 documents: dict | None = None):
        self.config = config
        self.goals = goals
        self.catalogue = catalogue
        self._documents = documents  # parsed files by path, only when opened with cache=True

    def __repr__(self) -> str:
        return f"Project({self.root})"

    @property
    def root(self) -> Path:
        """The folder holding runletter.toml."""
        return self.config.root

    def posts(self) -> tuple[Post, ...]:
        """Every post, newest first."""
        return load_posts(self.config.content_dir, self.root, self._documents)

    def post(self, name: str) -> Post:
        """One post by slug or path."""
        return read_post(find_post(self.config.content_dir, self.root, name), self.root)

    def save_cache(self) -> None:
        """Remember parsed documents for the next run (when opened with cache=True)."""
        if self._documents is not None:
            save_cache(cache_path(self.root, "documents"), self._documents)

    def resolve(self, post: Post) -> Resolved:
        """Check a post's references against this project."""
        return resolve(post, self.catalogue, self.goals, self.config.topics)

    def resolve_all(self, include_drafts: bool = False) -> tuple[Resolved, ...]:
        """Resolve every post in the archive (drafts too when asked; a post scheduled for
        later counts as one), gathering all errors before raising."""
        resolved: list[Resolved] = []
        findings: list[Finding] = []
        now = clock.now()
        for post in self.posts():
            if post.is_draft and not include_drafts:
                continue
            when = published_at(post, self.config.schedule)
            if when is not None and when > now and not include_drafts:
                continue  # scheduled: on the archive from its send time
            try:
                resolved.append(self.resolve(post))
            except RunletterError as exc:
                findings.extend(exc.findings)
        if findings:
            raise RunletterError(findings)
        return tuple(resolved)


def open_project(start: Path | None = None, cache: bool = False) -> Project:
    """Find the project at or above `start` and load it; raise with every problem found.

    With cache=True, files unchanged since the last cached run are not parsed again.
    """
    root = find_root(start)
    config = load_config(root)
    documents = (load_cache(cache_path(root, "documents")) or {}) if cache else None
    findings: list[Finding] = []
    goals = catalogue = None
    for load in ("goals", "catalogue"):
        try:
            if load == "goals":
                goals = load_goals(config.goals_path, root)
            else:
                catalogue = load_catalogue(config.content_dir, root, documents)
        except RunletterError as exc:
            findings.extend(exc.findings)
    if goals is not None and catalogue is not None:
        findings.extend(check_catalogue(catalogue, goals))
    if findings:
        raise RunletterError(findings)
    assert goals is not None and catalogue is not None
    return Project(config=config, goals=goals, catalogue=catalogue, documents=documents)
