"""The preview's HTTP side: a stdlib ThreadingHTTPServer serving the pages and the event stream.

No framework: a dev tool on the author's machine needs no WSGI stack, and Server-Sent Events
are a long-lived response a thread can simply hold.
"""

from __future__ import annotations

import html
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import jinja2

from publisher.errors import Finding, RunletterError, display_path, finding_line
from publisher.model import Post
from publisher.preview.watcher import Broadcaster, Watcher
from publisher.preview.workspace import PostView, ReaderChoice, Workspace, crash

TEMPLATES = Path(__file__).parent / "templates"
STATIC = {"preview.css": "text/css; charset=utf-8",
          "preview.js": "text/javascript; charset=utf-8"}
KEEPALIVE_SECONDS = 15.0
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


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

    def wait_stopped(self, timeout: float) -> bool:
        """Whether the preview has stopped, waiting up to `timeout` seconds (a short wait in
        a loop leaves the main thread free to see Ctrl+C)."""
        return self._stopping.wait(timeout)

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
            finding = crash(exc, f"answering {self.path}")
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
