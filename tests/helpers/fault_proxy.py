"""An HTTP proxy on 127.0.0.1 in front of a real test server (moto), that answers the next
request badly on request: the faults a provider's network can have, where the server
behind cannot make them itself.

    with fault_proxy(moto.url) as proxy:
        proxy.next("drop")   # forwarded (the server acts on it), then reset, no answer
        ... point the client at proxy.url ...

Faults: "reset-before" (reset before the body is read: nothing forwarded), "drop"
(forwarded, then reset), ("late", s) (forwarded, answered s seconds later), ("garbage",
body) (forwarded, answered 200 with `body`), ("answer", status, headers, body) (not
forwarded: answered so, as the service does for a refusal).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.samples import HOST

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FaultProxy(ThreadingHTTPServer):
    """The proxy's server: where it forwards, and the faults still to play."""

    daemon_threads = True

    def __init__(self, upstream: str):
        super().__init__((HOST, 0), _Handler)
        self.upstream = upstream.rstrip("/")
        self.faults: deque[tuple[Any, ...]] = deque()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """Where a client should send its requests."""
        return f"http://{HOST}:{self.server_address[1]}"

    def next(self, *fault: Any) -> None:
        """The next request meets `fault` (see the module)."""
        with self.lock:
            self.faults.append(fault)

    def take(self) -> tuple[Any, ...] | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None


class _Handler(BaseHTTPRequestHandler):
    server: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reset(self) -> None:
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def do_POST(self) -> None:
        fault = self.server.take() or ("pass",)
        if fault[0] == "reset-before":
            self._reset()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if fault[0] == "answer":
            self._reply(*fault[1:])
            return
        status, headers, answer = self._forward(body)
        if fault[0] == "drop":
            self._reset()
            return
        if fault[0] == "late":
            time.sleep(fault[1])
        if fault[0] == "garbage":
            status, answer = 200, fault[1]
        self._reply(status, headers, answer)

    do_GET = do_PUT = do_POST

    def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        request = urllib.request.Request(self.server.upstream + self.path, data=body or None,
                                         method=self.command, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers.items()), exc.read()

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() not in ("server", "date"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True


@contextlib.contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """A FaultProxy in front of `upstream` for the duration of the block."""
    proxy = FaultProxy(upstream)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)
