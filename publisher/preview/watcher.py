"""Watching the project's files and pushing "reload" events to every open page."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click

from publisher.errors import RunletterError
from publisher.preview.workspace import Workspace


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
            import watchfiles  # noqa: F401  # why: optional; only the preview needs it
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
        import watchfiles  # why: optional, found present when this watcher was made

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


