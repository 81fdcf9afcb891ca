"""A real moto server (AWS APIs, SES among them) on 127.0.0.1 for tests, in a thread.

    with running_moto() as moto:
        ... point boto3 at endpoint_url=moto.url ...
        moto.sent()          # SES raw messages: [{"id", "source", "destinations", "raw_data"}]
        moto.reset()         # forget everything (identities, messages) between tests
        with moto.auth():    # moto checks credentials (IAM) until the block ends

moto keeps its state in this process, so one server serves a whole module; reset() it
between tests. ThreadedMotoServer.start() and stop() wait without a limit; here both are
bounded, so a server that cannot bind fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from moto.server import ThreadedMotoServer

from tests.samples import HOST

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
HTTP_TIMEOUT = 5.0


@dataclass(frozen=True)
class MotoServer:
    """The running server's address and its /moto-api/ helpers."""

    url: str

    def _call(self, path: str, data: bytes | None = None) -> Any:
        request = urllib.request.Request(
            self.url + path, data=data, method="GET" if data is None else "POST",
            headers={"Content-Type": "text/plain"})  # not form-encoded: moto reads the body
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return json.loads(response.read())

    def data(self) -> dict[str, Any]:
        """GET /moto-api/data.json: every model instance moto tracks, per service."""
        return self._call("/moto-api/data.json")

    def sent(self) -> list[dict[str, Any]]:
        """Raw messages SES accepted (SendEmail v2 with Raw content lands in ses.RawMessage)."""
        return self.data().get("ses", {}).get("RawMessage", [])

    def reset(self) -> None:
        """POST /moto-api/reset: all services back to empty."""
        self._call("/moto-api/reset", b"")

    @contextlib.contextmanager
    def auth(self) -> Iterator[None]:
        """Make moto check credentials like AWS does (IAM), restoring the old setting after."""
        before = self._call("/moto-api/reset-auth", b"0")
        try:
            yield
        finally:
            self._call("/moto-api/reset-auth",
                       before["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"].encode())


def _bounded(target, timeout: float, what: str) -> None:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise RuntimeError(f"moto server did not {what} within {timeout:.0f} s")


@contextlib.contextmanager
def running_moto() -> Iterator[MotoServer]:
    """Start moto on a free port of 127.0.0.1; stop it on exit (each step time-limited)."""
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)  # no request log lines in the test output
    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    try:
        _bounded(server.start, START_TIMEOUT, "start")
        host, port = server.get_host_and_port()
        try:
            yield MotoServer(f"http://{host}:{port}")
        finally:
            _bounded(server.stop, STOP_TIMEOUT, "stop")
    finally:
        werkzeug.setLevel(level)
