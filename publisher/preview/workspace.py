"""The preview's model of the project: loaded again on every change, posts rendered on demand.

A content error never raises out of here: it becomes a finding the page shows, and the next
good save recovers.
"""

from __future__ import annotations

import itertools
import secrets
import sys
import threading
import traceback
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from publisher.config import CONFIG_NAME, Config, load_config
from publisher.content.posts import SLUG_RE, document_paths, read_post
from publisher.delivery.address import Addresser
from publisher.delivery.tokens import Signer, load_secret
from publisher.errors import Counted, Finding, RunletterError, suggest
from publisher.model import Edition, Goal, Post
from publisher.project import Project, open_project
from publisher.render.check import archive_paths, check_posts, check_resolved
from publisher.render.email import EmailRenderer
from publisher.store import Store

# Reader links in the preview are signed with the project's secret when it has one; without
# one they get this fixed key, which no `runletter serve` accepts.
PREVIEW_SECRET = "runletter-preview-only-never-used-to-send"
READER_LIMIT = 50
SAMPLE_EMAIL = "reader@example.org"


def errors_first(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: f.level != "error"))


def crash(exc: BaseException, what: str) -> Finding:
    """An unexpected exception as a finding (the traceback goes to the terminal)."""
    traceback.print_exception(exc, file=sys.stderr)
    return Finding("runletter", None, f"internal error while {what}: "
                   f"{type(exc).__name__}: {exc} (traceback in the terminal)")


@dataclass(frozen=True)
class PostEntry:
    """One file under content/posts/ for the post list; `post` is None when it does not load."""

    slug: str
    post: Post | None
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class SampleReader:
    """A reader whose merge values fill the preview."""

    id: int
    email: str
    first_name: str
    goal: str
    status: str

    @property
    def label(self) -> str:
        """How the reader select list shows them."""
        name = f"{self.first_name} · " if self.first_name else ""
        status = "" if self.status == "active" else f" ({self.status})"
        return f"{name}{self.email} · {self.goal}{status}"


@dataclass(frozen=True)
class ReaderChoice:
    """Whose values fill the merge fields, and who else the page offers."""

    readers: list[SampleReader]
    reader: SampleReader | None
    email: str
    note: str | None
    query: str  # "?reader=…" to carry the choice into links and frames, or ""


@dataclass(frozen=True)
class PostView(Counted):
    """One post rendered for every goal in its audience, with its check findings."""

    slug: str
    post: Post | None
    goals: tuple[Goal, ...] = ()
    editions: dict[str, Edition] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    blocked: bool = False  # the project itself does not load: findings are its problems


class Workspace:
    """The project as last loaded, rebuilt on every change; rendering is cached per build."""

    def __init__(self, root: Path):
        self.root = root
        self.boot = secrets.token_hex(4)
        self.build = 0
        self.config: Config | None = None
        self.project: Project | None = None
        self.problems: tuple[Finding, ...] = ()
        self._lock = threading.RLock()
        self._views: OrderedDict[str, PostView] = OrderedDict()
        self.rebuild()

    @property
    def generation(self) -> str:
        """Changes on every rebuild and every server start; the page compares it."""
        return f"{self.boot}-{self.build}"

    def rebuild(self) -> None:
        """Load the project again; problems are kept, never raised."""
        with self._lock:
            self.build += 1
            self._views.clear()
            self.project = None
            try:
                self.config = load_config(self.root)
                self.project = open_project(self.root)
                self.problems = ()
            except RunletterError as exc:
                self.problems = errors_first(exc.findings)
            except Exception as exc:  # a bug must not take the preview down
                self.problems = (crash(exc, "loading the project"),)

    # -- watching ------------------------------------------------------------------------

    def watched(self) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
        """(folders watched recursively, folders watched for their own entries)."""
        config = self.config
        content = config.content_dir if config else self.root / "content"
        layouts = config.layouts_dir if config else self.root / "layouts"
        goals = config.goals_path if config else self.root / "subscribers" / "goals.toml"
        return (content, layouts), tuple(dict.fromkeys((self.root, goals.parent)))

    def is_relevant(self, path: Path) -> bool:
        """Only content, layouts and the two config files trigger a rebuild."""
        config = self.config
        content = config.content_dir if config else self.root / "content"
        layouts = config.layouts_dir if config else self.root / "layouts"
        goals = config.goals_path if config else self.root / "subscribers" / "goals.toml"
        if path in (self.root / CONFIG_NAME, goals):
            return True
        return any(path == folder or folder in path.parents for folder in (content, layouts))

    # -- posts ---------------------------------------------------------------------------

    def post_entries(self) -> list[PostEntry]:
        """Every post file, the ones that do not load first, then newest first."""
        if self.config is None:
            return []
        folder = self.config.content_dir / "posts"
        good: list[PostEntry] = []
        bad: list[PostEntry] = []
        for path in document_paths(folder):
            try:
                good.append(PostEntry(path.stem, read_post(path, self.root)))
            except RunletterError as exc:
                bad.append(PostEntry(path.stem, None, errors_first(exc.findings)))
        good.sort(key=lambda e: (e.post.date if e.post else None, e.slug), reverse=True)
        return bad + good

    def post_path(self, slug: str) -> Path | None:
        """The file of a post slug, or None (slugs only: never a path from a URL)."""
        if self.config is None or not SLUG_RE.match(slug):
            return None
        path = self.config.content_dir / "posts" / f"{slug}.md"
        return path if path.is_file() else None

    def view(self, slug: str) -> PostView | None:
        """The post rendered for every goal (cached until the next rebuild), or None."""
        with self._lock:
            if slug in self._views:
                self._views.move_to_end(slug)
                return self._views[slug]
            path = self.post_path(slug)
            if path is None:
                return None
            try:
                view = self._render(slug, path)
            except Exception as exc:
                view = PostView(slug, None, findings=(crash(exc, f"rendering '{slug}'"),))
            self._views[slug] = view
            while len(self._views) > 8:
                self._views.popitem(last=False)
            return view

    def _render(self, slug: str, path: Path) -> PostView:
        try:
            post = read_post(path, self.root)
        except RunletterError as exc:
            return PostView(slug, None, findings=errors_first(exc.findings))
        project = self.project
        if project is None:
            return PostView(slug, post, findings=self.problems, blocked=True)
        try:
            resolved = project.resolve(post)
            editions = EmailRenderer(project.config).editions(resolved)
        except RunletterError as exc:
            return PostView(slug, post, findings=errors_first(exc.findings))
        try:
            findings = check_posts(project, [post])
        except RunletterError:
            # Another post does not load, so check_posts cannot list the archive; check
            # this one against the posts that do (the post list shows the broken one).
            loaded = [e.post for e in self.post_entries() if e.post is not None]
            pages = archive_paths(loaded, project.catalogue, project.goals)
            drafts = {p.slug: p for p in loaded if p.is_draft}
            findings = check_resolved(resolved, editions.values(), project.config, pages,
                                      drafts)
        return PostView(slug, post, goals=resolved.audience, editions=editions,
                        findings=errors_first(findings))

    def suggestion(self, slug: str) -> str:
        """' (did you mean …?)' for an unknown slug."""
        return suggest(slug, [e.slug for e in self.post_entries()])

    # -- readers -------------------------------------------------------------------------

    def readers(self, email: str | None
                ) -> tuple[list[SampleReader], SampleReader | None, str | None]:
        """Up to READER_LIMIT readers from the store, the chosen one, and a note for the page.

        The store is only read when it exists: the preview never creates one.
        """
        local = self.config.store_file() if self.config is not None else None
        if self.config is None or (local is not None and not local.is_file()):
            note = (f"no reader '{email}': there is no subscriber store yet, so merge fields "
                    "show sample values") if email else None
            return [], None, note
        try:
            with Store.open(self.config.store_url()) as store:
                listed = [_reader(s) for s in itertools.islice(
                    store.list(batch_size=READER_LIMIT), READER_LIMIT)]
                chosen = store.get(email) if email else None
        except RunletterError as exc:
            return [], None, "; ".join(str(f) for f in exc.findings)
        if email and chosen is None:
            return listed, None, f"no reader '{email}' in the store; showing sample values"
        reader = _reader(chosen) if chosen is not None else None
        if reader is not None and all(r.id != reader.id for r in listed):
            listed.insert(0, reader)
        return listed, reader, None

    def merge_values(self, slug: str, reader: SampleReader | None) -> dict[str, str]:
        """What the merge slots hold for this reader (or the sample reader)."""
        if self.config is None:
            return {}
        secret, _ = load_secret(self.root, create=False)
        addresser = Addresser(self.config, Signer(secret or PREVIEW_SECRET))
        if reader is None:
            return addresser.values_for(slug, 0, SAMPLE_EMAIL, "")
        return addresser.values_for(slug, reader.id, reader.email, reader.first_name)


def _reader(subscriber) -> SampleReader:
    return SampleReader(id=subscriber.id, email=subscriber.email,
                        first_name=subscriber.first_name, goal=subscriber.goal,
                        status=subscriber.status)


