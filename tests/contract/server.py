"""The HTTP side: a stdlib ThreadingHTTPServer in a daemon thread, faults, records, stats."""

from __future__ import annotations

import collections
import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.contract._common import App, Delivered, Reply, Request, RequestRecord, dumps
from tests.contract.mailgun import MailgunApp
from tests.contract.postmark import PostmarkApp
from tests.contract.sendgrid import SendGridApp

HOST = "127.0.0.1"
STOP_TIMEOUT = 5.0
STATS_PATH = "/_contract/stats"
CHUNK = 1 << 20
PROVIDERS = {"postmark": PostmarkApp, "mailgun": MailgunApp, "sendgrid": SendGridApp}
DROP = "drop"
RESET_BEFORE = "reset-before"
TAKE = "take"


class ContractServer:
    """A running contract server: its URL, what it was sent, and the faults to inject."""

    def __init__(self, app: App, url: str = ""):
        self.provider = app.name
        self.url = url
        self.key = app.key  # the token / API key the server accepts
        self.domain: str | None = getattr(app, "domain", None)
        self.requests: list[RequestRecord] = []
        self.delivered: list[Delivered] = []
        self._app = app
        self._lock = threading.Lock()
        self._faults: collections.deque[tuple[Any, ...]] = collections.deque()
        self._rejected: frozenset[str] = frozenset()
        self._counts: collections.Counter[str] = collections.Counter()
        self._deliveries = 0
        self._max_recipients = 0
        self.clock = time.monotonic  # stamps RequestRecord.at; tests may set a fake clock
        self._delay = 0.0
        self._arrived = 0
        self._hold_until = 0
        self._hold_timeout = 0.0
        self._released = threading.Event()
        self._released.set()

    # -- what tests and benchmarks call --------------------------------------------------
    def fail_next(self, status: int, *, times: int = 1, headers: dict | None = None,
                  body: bytes | dict | None = None) -> None:
        """The next `times` requests answer `status` (the documented body unless given; 429
        also says Retry-After: 1) and deliver nothing."""
        with self._lock:
            self._faults.extend([("fail", status, dict(headers or {}), body)] * times)

    def drop_next(self, times: int = 1) -> None:
        """The next `times` requests are read, then the connection closes without an answer."""
        with self._lock:
            self._faults.extend([(DROP,)] * times)

    def reset_before_body_next(self) -> None:
        """The next request's connection closes before its body is read: nothing taken."""
        with self._lock:
            self._faults.append((RESET_BEFORE,))

    def take_then_next(self, how: str, arg: float | bytes = 0.0) -> None:
        """The next request is taken (its readers delivered), then answered badly: `how` is
        "drop" (the connection closes with no answer), "late" (answered `arg` seconds
        later, past the client's timeout) or "garbage" (a 200 whose body is `arg`)."""
        with self._lock:
            self._faults.append((TAKE, how, arg))

    def reject(self, email: str) -> None:
        """Refuse this recipient permanently, the way the provider does (see its module)."""
        with self._lock:
            self._rejected = self._rejected | {email.strip().lower()}

    def pace(self, delay: float = 0.0, hold_until: int = 0, hold_timeout: float = 60.0) -> None:
        """Answer every request `delay` seconds late; with `hold_until`, answer none until
        that many more have arrived at once (or `hold_timeout` has passed), so clients in
        several processes are sure to overlap."""
        with self._lock:
            self._delay, self._hold_timeout = delay, hold_timeout
            self._hold_until = self._arrived + hold_until
            if hold_until:
                self._released.clear()

    def counts(self) -> collections.Counter[str]:
        """Recipient address -> number of copies delivered."""
        with self._lock:
            return collections.Counter(self._counts)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"requests": len(self.requests), "delivered": self._deliveries,
                    "max_recipients_per_request": self._max_recipients}

    # -- used by the handler -------------------------------------------------------------
    def _wait(self) -> None:
        """Hold a request as `pace` says."""
        with self._lock:
            self._arrived += 1
            if self._arrived >= self._hold_until:
                self._released.set()
            delay, timeout = self._delay, self._hold_timeout
        self._released.wait(timeout)
        if delay:
            time.sleep(delay)

    def _take_fault(self) -> tuple[Any, ...] | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _fault_reply(self, fault: tuple[Any, ...], req: Request) -> Reply:
        _, status, headers, body = fault
        reply = self._app.fault_reply(status)
        if status == 429:
            reply.headers.setdefault("Retry-After", "1")
        if isinstance(body, dict | list):
            reply.body, reply.content_type = dumps(body), "application/json; charset=utf-8"
        elif body is not None:
            reply.body = bytes(body)
            reply.content_type = ("application/json; charset=utf-8"
                                  if reply.body.lstrip()[:1] in (b"{", b"[") else
                                  "text/plain; charset=utf-8")
        reply.headers.update(headers)
        reply.recipients = self._app.recipients_in(req)
        reply.delivered, reply.delivered_to = [], []
        return reply

    def _record(self, req: Request, status: int, reply: Reply | None) -> None:
        recipients = reply.recipients if reply else 0
        if not recipients and req.body and (reply is None or reply.status >= 400):
            recipients = self._app.recipients_in(req)  # refused before the count was made
        with self._lock:
            self.requests.append(RequestRecord(req.method, req.path, status, recipients,
                                               req.size, self.clock()))
            self._max_recipients = max(self._max_recipients, recipients)
            if reply is None:
                return
            if reply.delivered:
                self.delivered.extend(reply.delivered)
                self._counts.update(d.to for d in reply.delivered)
                self._deliveries += len(reply.delivered)
            if reply.delivered_to:
                self._counts.update(reply.delivered_to)
                self._deliveries += len(reply.delivered_to)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], contract: ContractServer):
        super().__init__(address, _Handler)
        self.contract = contract
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        with self.connections_lock:
            open_ones = list(self.connections)
        for conn in open_ones:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs
    server_version = "contract-server"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the records say what happened

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        contract = self.server.contract
        path = urlsplit(self.path).path
        if path == STATS_PATH:
            self._read_body(None)
            self._send(Reply(200, dumps(contract.stats())))
            return
        with contract._lock:
            if contract._faults and contract._faults[0][0] == RESET_BEFORE:
                contract._faults.popleft()
                self.close_connection = True
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))  # RST, not FIN
                return
        body, size, oversize = self._read_body(contract._app.max_bytes)
        if body is None:
            self.close_connection = True
            self._send(Reply(400, b"bad request framing", "text/plain"))
            return
        req = Request(self.command, path, self.headers, body, size, oversize)
        contract._wait()
        fault = contract._take_fault()
        if fault and fault[0] == DROP:
            contract._record(req, 0, None)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault and fault[0] == TAKE:
            self._taken(req, *fault[1:])
            return
        if fault:
            reply = contract._fault_reply(fault, req)
        else:
            reply = contract._app.handle(req, contract._rejected)
        contract._record(req, reply.status, reply)
        self._send(reply)

    def _taken(self, req: Request, how: str, arg: Any) -> None:
        """Deliver the request as the provider would, then answer it badly."""
        contract = self.server.contract
        reply = contract._app.handle(req, contract._rejected)
        contract._record(req, reply.status, reply)
        if how == "late":
            time.sleep(arg)
        elif how == "garbage":
            reply = Reply(200, arg, "application/json; charset=utf-8")
        else:
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            return
        self._send(reply)

    def _read_body(self, limit: int | None) -> tuple[bytes | None, int, bool]:
        """(body, size, oversize): a body over `limit` is read and thrown away. None for a
        body whose framing cannot be read."""
        length = self.headers.get("Content-Length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return None, 0, False
            if limit is not None and size > limit:
                left = size
                while left > 0:
                    got = self.rfile.read(min(CHUNK, left))
                    if not got:
                        break
                    left -= len(got)
                return b"", size, True
            return self.rfile.read(size), size, False
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts, size = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    n = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    return None, size, False
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                data = self.rfile.read(n)
                self.rfile.readline(1024)
                size += n
                if limit is None or size <= limit:
                    parts.append(data)
            oversize = limit is not None and size > limit
            return (b"" if oversize else b"".join(parts)), size, oversize
        return b"", 0, False

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(reply.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except OSError:
            self.close_connection = True  # the client went away


def make_app(provider: str, options: dict[str, Any]) -> App:
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
    options = dict(options)
    token, api_key = options.pop("token", None), options.pop("api_key", None)
    key = token if token is not None else api_key
    keep_bodies = not options.pop("count_only", False)
    if key is not None:
        options["key"] = key
    try:
        return PROVIDERS[provider](keep_bodies=keep_bodies, **options)
    except TypeError as exc:
        raise TypeError(f"bad option for the {provider} contract server: {exc}") from None


@contextlib.contextmanager
def running(provider: str, **options: Any) -> Iterator[ContractServer]:
    """Run a contract server for `provider` on 127.0.0.1 in a daemon thread.

    Options: token / api_key (the credential; defaults "test-token", "key-test", "SG.test"),
    domain (mailgun; default "mg.example.org"), streams (postmark; default outbound and
    broadcast), count_only (keep counts, not Delivered copies), port (default: a free one).
    """
    port = int(options.pop("port", 0) or 0)
    contract = ContractServer(make_app(provider, options))
    httpd = _Server((HOST, port), contract)
    contract.url = f"http://{HOST}:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01},
                              name=f"contract-{provider}", daemon=True)
    thread.start()
    try:
        yield contract
    finally:
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        thread.join(STOP_TIMEOUT)


def stats_of(url: str) -> dict[str, int]:
    """GET /_contract/stats of a server in another process (stdlib only)."""
    from urllib.request import urlopen

    with urlopen(url.rstrip("/") + STATS_PATH, timeout=5) as answer:
        return json.loads(answer.read())
