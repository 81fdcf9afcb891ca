"""The request's store: one store connection per thread, lent to each request on `g`.

A connection per thread rather than per request: opening one checks the schema, and that
takes SQLite's write lock, which every request would then queue on. Each request borrows
its thread's connection; for GET, HEAD and OPTIONS it is read-only (SQLite's `PRAGMA
query_only`, PostgreSQL's `default_transaction_read_only`) for the whole request, whatever
the view does, so a page that tried to write on a link scanner's visit fails with a 500 and
changes nothing. Teardown rolls back whatever a failed request left open.
"""

from __future__ import annotations

import os
import threading

from flask import Flask, current_app, g, request

from publisher.store import Store

# Link scanners fetch with these; Flask runs a GET view for HEAD, so views test for POST.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
EXTENSION = "runletter.readers"  # the key of app.extensions


class Connections:
    """Per-thread Store connections (opened lazily, and again after a fork)."""

    def __init__(self, url: str):
        self.url = url
        self.local = threading.local()

    def store(self) -> Store:
        """This thread's Store."""
        local = self.local
        if getattr(local, "store", None) is None or local.pid != os.getpid():
            local.store = Store.open(self.url)
            local.pid = os.getpid()
        return local.store

    def read_only(self, on: bool) -> None:
        """Make the database refuse every write on this thread's connection while `on`."""
        self.store().conn.read_only(on)


def get_store() -> Store:
    """The current request's Store."""
    if "store" not in g:
        g.store = current_app.extensions[EXTENSION].store()
    return g.store


def guard_safe_methods() -> None:
    """Before every request, on every route present or added later: no writes on GET/HEAD."""
    current_app.extensions[EXTENSION].read_only(request.method in SAFE_METHODS)


def close_store(exc: BaseException | None = None) -> None:
    """After every request: give the connection back with no transaction left open."""
    store = g.pop("store", None)
    if store is not None and store.conn.in_transaction:
        store.conn.rollback_quietly()


def init_app(app: Flask, url: str) -> None:
    """Give the app its store connections; install the read-only guard and the teardown."""
    app.extensions[EXTENSION] = Connections(url)
    app.before_request(guard_safe_methods)
    app.teardown_appcontext(close_store)
