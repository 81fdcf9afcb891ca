"""`runletter preview`: a local page showing every goal's edition of a post, live.

A stdlib ThreadingHTTPServer (no framework: a dev tool on the author's machine needs no
WSGI stack, and Server-Sent Events are a long-lived response a thread can simply hold).
It renders with the real pipeline (resolve → EmailRenderer → check_posts), so what the
page shows is what `runletter publish` would send. A watchfiles thread rebuilds when
anything under content/ or layouts/, runletter.toml or subscribers/goals.toml changes, and
pushes a "reload" event to `/events`; the page then re-fetches itself and its frames.
A content error never stops the server: it shows on the page as the one-line finding,
and the next good save recovers.
"""

from __future__ import annotations

import html
import itertools
import queue
import secrets
import socket
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import click
import jinja2

from .config import CONFIG_NAME, Config, find_root, load_config
from .errors import Finding, RunletterError, display_path, suggest
from .load import SLUG_RE, read_post
from .model import Edition, Goal, Post
from .project import Project, open_project

TEMPLATES = Path(__file__).parent / "preview_templates"
STATIC = {"preview.css": "text/css; charset=utf-8",
          "preview.js": "text/javascript; charset=utf-8"}
# Reader links in the preview are signed with the project's secret when it has one; without
# one they get this fixed key, which no `runletter serve` accepts.
PREVIEW_SECRET = "runletter-preview-only-never-used-to-send"
READER_LIMIT = 50
SAMPLE_EMAIL = "reader@example.org"
KEEPALIVE_SECONDS = 15.0
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def finding_line(finding: Finding) -> str:
    """A finding as `runletter check` prints it: `path:line: level: message`."""
    where = f"{finding.path}:{finding.line}" if finding.line else finding.path
    return f"{where}: {finding.level}: {finding.message}"


def _errors_first(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: f.level != "error"))


def _crash(exc: BaseException, what: str) -> Finding:
    """An unexpected exception as a finding (the traceback goes to the terminal)."""
    traceback.print_exception(exc, file=sys.stderr)
    return Finding("runletter", None, f"internal error while {what}: "
                   f"{type(exc).__name__}: {exc} (traceback in the terminal)")


# -- what the pages show ---------------------------------------------------------------------


@dataclass(frozen=True)
class PostEntry:
    """One file under content/posts/ for the post list; `post` is None when it does not load."""

    slug: str
    post: Post | None
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class Reader:
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

    readers: list[Reader]
    reader: Reader | None
    email: str
    note: str | None
    query: str  # "?reader=…" to carry the choice into links and frames, or ""


@dataclass(frozen=True)
class PostView:
    """One post rendered for every goal in its audience, with its check findings."""

    slug: str
    post: Post | None
    goals: tuple[Goal, ...] = ()
    editions: dict[str, Edition] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    blocked: bool = False  # the project itself does not load: findings are its problems

    @property
    def errors(self) -> int:
        """How many findings are errors."""
        return sum(f.level == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        """How many findings are warnings."""
        return len(self.findings) - self.errors


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
                self.problems = _errors_first(exc.findings)
            except Exception as exc:  # a bug must not take the preview down
                self.problems = (_crash(exc, "loading the project"),)

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
        for path in sorted(folder.glob("*.md")):
            if path.name.lower() == "readme.md" or path.name.startswith("_"):
                continue
            try:
                good.append(PostEntry(path.stem, read_post(path, self.root)))
            except RunletterError as exc:
                bad.append(PostEntry(path.stem, None, _errors_first(exc.findings)))
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
                view = PostView(slug, None, findings=(_crash(exc, f"rendering '{slug}'"),))
            self._views[slug] = view
            while len(self._views) > 8:
                self._views.popitem(last=False)
            return view

    def _render(self, slug: str, path: Path) -> PostView:
        from .check import archive_paths, check_posts, check_resolved
        from .render import EmailRenderer

        try:
            post = read_post(path, self.root)
        except RunletterError as exc:
            return PostView(slug, None, findings=_errors_first(exc.findings))
        project = self.project
        if project is None:
            return PostView(slug, post, findings=self.problems, blocked=True)
        try:
            resolved = project.resolve(post)
            editions = EmailRenderer(project.config).editions(resolved)
        except RunletterError as exc:
            return PostView(slug, post, findings=_errors_first(exc.findings))
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
                        findings=_errors_first(findings))

    def suggestion(self, slug: str) -> str:
        """' (did you mean …?)' for an unknown slug."""
        return suggest(slug, [e.slug for e in self.post_entries()])

    # -- readers -------------------------------------------------------------------------

    def readers(self, email: str | None) -> tuple[list[Reader], Reader | None, str | None]:
        """Up to READER_LIMIT readers from the store, the chosen one, and a note for the page.

        The store is only read when it exists: the preview never creates one.
        """
        if self.config is None or not self.config.store_path.is_file():
            note = (f"no reader '{email}': there is no subscriber store yet, so merge fields "
                    "show sample values") if email else None
            return [], None, note
        from .store import Store

        try:
            with Store.open(self.config.store_path) as store:
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

    def merge_values(self, slug: str, reader: Reader | None) -> dict[str, str]:
        """What the merge slots hold for this reader (or the sample reader)."""
        from .address import Addresser
        from .tokens import Signer, load_secret

        if self.config is None:
            return {}
        secret, _ = load_secret(self.root, create=False)
        addresser = Addresser(self.config, Signer(secret or PREVIEW_SECRET))
        if reader is None:
            return addresser.values_for(slug, 0, SAMPLE_EMAIL, "")
        return addresser.values_for(slug, reader.id, reader.email, reader.first_name)


def _reader(subscriber) -> Reader:
    return Reader(id=subscriber.id, email=subscriber.email, first_name=subscriber.first_name,
                  goal=subscriber.goal, status=subscriber.status)


# -- pushing reloads -------------------------------------------------------------------------


class Broadcaster:
    """Hands each event to every open `/events` stream."""

    def __init__(self) -> None:
        self._clients: set[queue.Queue[tuple[str, str] | None]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def subscribe(self) -> queue.Queue[tuple[str, str] | None]:
        """A queue of (event, data); None means the server is stopping."""
        mailbox: queue.Queue[tuple[str, str] | None] = queue.Queue()
        with self._lock:
            if self._closed:
                mailbox.put(None)
            self._clients.add(mailbox)
        return mailbox

    def unsubscribe(self, mailbox: queue.Queue[tuple[str, str] | None]) -> None:
        """Forget a stream that ended."""
        with self._lock:
            self._clients.discard(mailbox)

    def publish(self, event: str, data: str) -> None:
        """Send an event to every stream."""
        with self._lock:
            for mailbox in self._clients:
                mailbox.put((event, data))

    def close(self) -> None:
        """End every stream."""
        with self._lock:
            self._closed = True
            for mailbox in self._clients:
                mailbox.put(None)

    @property
    def listeners(self) -> int:
        """How many streams are open."""
        with self._lock:
            return len(self._clients)


class Watcher:
    """Two watchfiles threads: content/ and layouts/ recursively, and the folders holding
    runletter.toml and goals.toml for their own entries (so an editor's save-by-rename of
    the config is still seen, and the store's database files never wake us)."""

    def __init__(self, workspace: Workspace, on_change: Callable[[set[Path]], None]):
        try:
            import watchfiles  # noqa: F401 (imported here, not for every runletter command)
        except ImportError:
            raise RunletterError("runletter preview needs the 'watchfiles' package: "
                                 "pip install watchfiles") from None
        self.workspace = workspace
        self.on_change = on_change
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ready = {True: threading.Event(), False: threading.Event()}
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start watching in the background."""
        for recursive in (True, False):
            thread = threading.Thread(target=self._run, args=(recursive,), daemon=True,
                                      name=f"preview-watch-{'tree' if recursive else 'files'}")
            thread.start()
            self._threads.append(thread)

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Wait until both threads watch (a change made after this is seen)."""
        deadline = time.monotonic() + timeout
        return all(e.wait(max(0.0, deadline - time.monotonic())) for e in self._ready.values())

    def stop(self) -> None:
        """Stop watching and wait for the threads (they notice within a second)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _targets(self, recursive: bool) -> tuple[Path, ...]:
        trees, folders = self.workspace.watched()
        return tuple(p for p in (trees if recursive else folders) if p.is_dir())

    def _run(self, recursive: bool) -> None:
        import watchfiles

        default = watchfiles.DefaultFilter()

        def keep(change: watchfiles.Change, path: str) -> bool:
            return default(change, path) and self.workspace.is_relevant(Path(path))

        while not self._stop.is_set():
            targets = self._targets(recursive)
            if not targets:
                self._ready[recursive].set()
                self._stop.wait(1.0)
                continue
            try:
                # watch() yields an empty set every rust_timeout ms when nothing happened:
                # the first yield proves the watches are in place, later ones let us notice
                # a folder that appeared.
                for changes in watchfiles.watch(
                        *targets, watch_filter=keep, stop_event=self._stop, recursive=recursive,
                        debounce=800, step=50, rust_timeout=250, yield_on_timeout=True,
                        raise_interrupt=False):
                    self._ready[recursive].set()
                    if changes and not self._stop.is_set():
                        with self._lock:  # one rebuild at a time, whichever thread saw it
                            self.on_change({Path(p) for _, p in changes})
                    if self._targets(recursive) != targets:
                        break  # a folder appeared or moved: watch the new set
            except Exception as exc:  # e.g. a watched folder was deleted: look again soon
                if not self._stop.is_set():
                    click.echo(f"preview: watching paused ({exc}); retrying", err=True)
                    self._stop.wait(1.0)


# -- HTTP ------------------------------------------------------------------------------------


class PreviewServer:
    """The preview: a Workspace, an HTTP server on a background thread and a file watcher."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 8100,
                 reader: str | None = None, watch: bool = True,
                 log: Callable[[str], None] | None = None):
        self.workspace = Workspace(root)
        self.events = Broadcaster()
        self.default_reader = reader
        self.log = log or (lambda message: None)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=True, undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True)
        self.templates.filters["finding"] = finding_line
        self.templates.filters["kb"] = lambda n: f"{n / 1024:.1f} KB"
        self._stopping = threading.Event()
        self.watcher = Watcher(self.workspace, self._changed) if watch else None
        try:
            self.http = _HTTPServer((host, port), self)
        except OSError as exc:
            raise RunletterError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                 "try another --port") from None
        self.host = host
        self.port = self.http.server_address[1]
        self.allowed_hosts = {host.strip("[]").lower(), *LOOPBACK_NAMES}
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the preview answers."""
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def start(self) -> PreviewServer:
        """Serve and watch in background threads; return once the watcher is watching."""
        self._thread = threading.Thread(target=self.http.serve_forever, kwargs={
            "poll_interval": 0.2}, daemon=True, name="preview-http")
        self._thread.start()
        if self.watcher:
            self.watcher.start()
            self.watcher.wait_ready()
        return self

    def stop(self) -> None:
        """Stop watching, end the event streams and close the socket (again is harmless)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self.watcher:
            self.watcher.stop()
        self.events.close()
        if self._thread:  # shutdown() waits for serve_forever, so only after start()
            self.http.shutdown()
            self._thread.join(timeout=5)
        self.http.server_close()

    def __enter__(self) -> PreviewServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def rebuild(self, changed: Iterable[Path] = ()) -> None:
        """Reload the project, render the posts that changed, and tell every open page."""
        started = time.perf_counter()
        workspace = self.workspace
        workspace.rebuild()
        changed = sorted(p for p in changed if p.exists() or p.suffix)  # not editors' temp files
        notes = []
        if workspace.problems:
            notes.append(_summary(workspace.problems))
        elif workspace.config is not None:
            posts = workspace.config.content_dir / "posts"
            for path in changed:
                if path.parent == posts and path.suffix == ".md" and path.exists():
                    view = workspace.view(path.stem)
                    if view is not None:
                        notes.append(f"{path.stem}: " + _summary(view.findings))
        names = ", ".join(display_path(p, workspace.root) for p in changed)
        self.log(f"rebuilt in {time.perf_counter() - started:.2f}s"
                 + (f" ({names} changed)" if names else "")
                 + (": " + "; ".join(notes) if notes else ""))
        self.events.publish("reload", workspace.generation)

    def _changed(self, paths: set[Path]) -> None:
        self.rebuild(paths)

    # -- pages -----------------------------------------------------------------------------

    def page(self, name: str, **context: object) -> bytes:
        """Render one of the preview's own templates."""
        workspace = self.workspace
        config = workspace.config
        context.setdefault("title", config.name if config else "Runletter")
        return self.templates.get_template(name).render(
            newsletter=config.name if config else workspace.root.name,
            generation=workspace.generation, problems=workspace.problems, **context,
        ).encode("utf-8")

    def reader_choice(self, query: dict[str, list[str]]) -> ReaderChoice:
        """The reader select list and the chosen reader, from ?reader= or --reader."""
        given = "reader" in query
        email = query["reader"][0].strip() if given else (self.default_reader or "")
        readers, reader, note = self.workspace.readers(email or None)
        return ReaderChoice(readers=readers, reader=reader, email=email, note=note,
                            query="?" + urlencode({"reader": email}) if given or email else "")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], preview: PreviewServer):
        self.preview = preview
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "runletter-preview"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: the terminal shows rebuilds, not every request."""

    @property
    def preview(self) -> PreviewServer:
        return self.server.preview

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        try:
            if not self._host_allowed():
                self._send(HTTPStatus.FORBIDDEN, b"the preview answers only to the host it "
                           b"listens on\n", "text/plain; charset=utf-8")
                return
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:
            finding = _crash(exc, f"answering {self.path}")
            try:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, str(finding).encode() + b"\n",
                           "text/plain; charset=utf-8")
            except OSError:
                pass

    def _host_allowed(self) -> bool:
        """Refuse other Host names (DNS rebinding would otherwise read drafts and readers)."""
        if self.preview.host in ("0.0.0.0", "::"):
            return True  # the author chose to expose it
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.strip("[]").lower() in self.preview.allowed_hosts

    def _route(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        parts = [p for p in url.path.split("/") if p]
        if not parts:
            self._index(query)
        elif parts == ["events"]:
            self._events()
        elif len(parts) == 2 and parts[0] == "_static" and parts[1] in STATIC:
            self._send(HTTPStatus.OK, (TEMPLATES / parts[1]).read_bytes(), STATIC[parts[1]])
        elif parts == ["favicon.ico"]:
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        elif len(parts) == 2 and parts[0] == "posts":
            if not url.path.endswith("/"):
                self._redirect(f"/posts/{quote(parts[1])}/" + (f"?{url.query}" if url.query
                                                               else ""))
            else:
                self._post(parts[1], query)
        elif len(parts) == 3 and parts[0] == "posts" and parts[2].endswith((".html", ".txt")):
            self._edition(parts[1], parts[2], query)
        else:
            self._not_found("no such page")

    # -- answers ---------------------------------------------------------------------------

    def _send(self, status: HTTPStatus, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for name, value in (headers or {"Content-Security-Policy":
                                        "frame-ancestors 'self'"}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _not_found(self, message: str, query: dict[str, list[str]] | None = None) -> None:
        body = self.preview.page("missing.html.j2", message=message,
                                 choice=self.preview.reader_choice(query or {}))
        self._send(HTTPStatus.NOT_FOUND, body, "text/html; charset=utf-8")

    def _index(self, query: dict[str, list[str]]) -> None:
        preview = self.preview
        body = preview.page("index.html.j2", entries=preview.workspace.post_entries(),
                            choice=preview.reader_choice(query))
        self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")

    def _post(self, slug: str, query: dict[str, list[str]]) -> None:
        preview = self.preview
        workspace = preview.workspace
        view = workspace.view(slug)
        choice = preview.reader_choice(query)
        if view is None:
            self._not_found(f"no post '{slug}' in content/posts/" + workspace.suggestion(slug),
                            query)
            return
        values = workspace.merge_values(slug, choice.reader) if view.editions else {}
        editions = []
        for goal in view.goals:
            edition = view.editions[goal.slug]
            base = f"/posts/{quote(slug)}/{quote(goal.slug)}"
            editions.append({
                "goal": goal,
                "html_url": f"{base}.html{choice.query}",
                "text_url": f"{base}.txt{choice.query}",
                "text": edition.text(values),
                "size": len(edition.html(values).encode("utf-8")),
                "is_readers": choice.reader is not None and choice.reader.goal == goal.slug,
            })
        post = view.post
        config = workspace.config
        body = preview.page(
            "post.html.j2", view=view, post=post, editions=editions, choice=choice,
            title=f"{post.title if post else slug} · preview",
            sender=config.sender_name if config else "",
            inbox_snippet=_snippet(editions[0]["text"] if editions else "", post))
        self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")

    def _edition(self, slug: str, name: str, query: dict[str, list[str]]) -> None:
        preview = self.preview
        goal, _, kind = name.rpartition(".")
        view = preview.workspace.view(slug)
        edition = view.editions.get(goal) if view else None
        if view is None or edition is None:
            self._send(HTTPStatus.NOT_FOUND, _gone(slug, goal, view).encode(),
                       "text/html; charset=utf-8")
            return
        values = preview.workspace.merge_values(slug, preview.reader_choice(query).reader)
        if kind == "txt":
            self._send(HTTPStatus.OK, edition.text(values).encode(), "text/plain; charset=utf-8")
            return
        page = edition.html(values)
        # Links open in a new tab instead of inside the frame; scripts never run (as in a
        # mail client).
        head = page.find("<head>")
        if head >= 0:
            page = page[:head + 6] + '<base target="_blank">' + page[head + 6:]
        self._send(HTTPStatus.OK, page.encode("utf-8"), "text/html; charset=utf-8",
                   {"Content-Security-Policy": "script-src 'none'; frame-ancestors 'self'"})

    def _events(self) -> None:
        """Server-Sent Events: `hello` with the current build, then `reload` on each change."""
        preview = self.preview
        mailbox = preview.events.subscribe()
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            self.wfile.write(f"retry: 1000\nevent: hello\ndata: "
                             f"{preview.workspace.generation}\n\n".encode())
            while True:
                try:
                    item = mailbox.get(timeout=KEEPALIVE_SECONDS)
                except queue.Empty:
                    self.wfile.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    return
                event, data = item
                self.wfile.write(f"event: {event}\ndata: {data}\n\n".encode())
        finally:
            preview.events.unsubscribe(mailbox)
            self.close_connection = True


def _summary(findings: tuple[Finding, ...]) -> str:
    """'ok', or the count of errors and warnings with the first finding."""
    if not findings:
        return "ok"
    errors = sum(f.level == "error" for f in findings)
    counts = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in
              ((errors, "error"), (len(findings) - errors, "warning")) if n]
    return f"{', '.join(counts)} — {finding_line(findings[0])}"


def _snippet(text: str, post: Post | None) -> str:
    """What an inbox shows after the subject: the preheader, else the email's first words."""
    if post is None or post.preheader:
        return post.preheader if post else ""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())[:140]


def _gone(slug: str, goal: str, view: PostView | None) -> str:
    """The frame's content when its edition cannot be shown (the page says why)."""
    if view is None:
        reason = f"no post '{slug}'"
    elif view.errors:
        reason = "this post has errors; see the findings above"
    else:
        reason = f"'{goal}' is not in this post's audience"
    return ("<!doctype html><meta charset=utf-8><body style=\"font:15px system-ui;color:#7b2d26;"
            f"padding:16px\">{html.escape(reason)}</body>")


# -- the command -----------------------------------------------------------------------------


@click.command("preview")
@click.option("--port", default=8100, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; keep the default unless you know why.")
@click.option("--reader", metavar="EMAIL", help="Fill merge fields with this reader's values "
              "(first name, links); the page can switch readers too.")
def preview_command(port: int, host: str, reader: str | None) -> None:
    """Preview every goal's edition of each post in the browser, rebuilt as you edit."""
    root = find_root(Path.cwd())
    server = PreviewServer(root, host=host, port=port, reader=reader,
                           log=lambda message: click.echo(f"preview: {message}", err=True))
    workspace = server.workspace
    for finding in workspace.problems:
        click.echo(finding_line(finding), err=True)
    if reader:
        note = workspace.readers(reader)[2]
        if note:
            click.echo(f"preview: {note}", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"preview: warning: listening on {host}, so other machines can see your "
                   "drafts and reader names", err=True)
    server.start()
    click.echo(f"Previewing {workspace.config.name if workspace.config else root.name} at "
               f"{server.url}  (watching content/, layouts/, {CONFIG_NAME} and the goals file; "
               "Ctrl+C to stop)")
    try:
        while not server._stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        click.echo("\nstopping the preview")
    finally:
        server.stop()
