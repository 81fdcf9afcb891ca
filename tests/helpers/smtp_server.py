"""A real SMTP server on 127.0.0.1 for tests and benchmarks (aiosmtpd in a thread).

    with running_smtp(refuse={"bad@example.com": "550 5.1.1 No such user"}) as server:
        ... connect to 127.0.0.1:server.port ...
        server.messages      # [(rcpt_tos, raw bytes)], in the order accepted
        server.sessions      # [{"tls": bool, "authenticated": bool}], one per message
        server.connections   # client sessions that said EHLO/HELO

Options: refuse / tempfail (per-recipient replies to RCPT), refuse_sender (reply to
MAIL FROM), server.handler.refuse_data (reply to DATA), drop_after=N (drop the
connection, once, on the DATA after N accepted ones),
auth=(username, password), starttls=True or smtps=True (TLS with a certificate from a
throwaway CA made by trustme; give the client server.cafile).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.helpers.support import free_port
from tests.samples import HOST

START_TIMEOUT = 5.0
# A refusal of the message itself, as a receiving server's DMARC check answers DATA.
DMARC = "554 5.7.1 Message rejected: DMARC policy of example.org says reject"
STOP_TIMEOUT = 5.0


class RecordingHandler:
    """aiosmtpd handler: records accepted mail, refuses or drops on request. Thread-safe."""

    def __init__(self, refuse: Mapping[str, str] | None = None,
                 tempfail: Mapping[str, str] | None = None,
                 refuse_sender: str | None = None,
                 drop_after: int | None = None, delay: float = 0.0):
        self.delay = delay  # seconds per message, to make a send slow enough to kill midway
        self.refuse = {k.lower(): v for k, v in (refuse or {}).items()}
        self.tempfail = {k.lower(): v for k, v in (tempfail or {}).items()}
        self.refuse_sender = refuse_sender
        self.drop_after = drop_after
        self.lock = threading.Lock()
        self.messages: list[tuple[list[str], bytes]] = []
        self.sessions: list[dict[str, bool]] = []  # per accepted message: TLS? logged in?
        self.connections = 0
        self.dropped = 0
        # Set on a running server's handler: the reply to DATA once `refuse_data_after`
        # messages were accepted (a message-level refusal, e.g. "554 5.7.1 ... DMARC").
        self.refuse_data: str | None = None
        self.refuse_data_after = 0
        # One fault for the next transaction (set by a test): ("mail", 0) drops the
        # connection at MAIL FROM, before any message; ("drop", 0) takes the message and
        # drops without a reply; ("late", s) takes it and replies s seconds later;
        # ("554", 0) refuses the message itself at the end of DATA.
        self.next_fault: tuple[str, float] | None = None

    def _count(self, server: SMTP) -> None:
        # One SMTP instance per connection; EHLO comes again after STARTTLS, so mark the
        # instance. The Controller's own start-up probe never says EHLO and is not counted.
        if not getattr(server, "_runletter_counted", False):
            server._runletter_counted = True
            with self.lock:
                self.connections += 1

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        """Count the connection, then answer as aiosmtpd would."""
        self._count(server)
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        """Count the connection, then answer as aiosmtpd would."""
        self._count(server)
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        """Refuse the sender when asked to."""
        if self.refuse_sender:
            return self.refuse_sender
        if self.next_fault and self.next_fault[0] == "mail":
            self.next_fault = None
            server.transport.abort()
            return "421 4.3.0 dropped by test server"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        """Refuse (5xx) or defer (4xx) the recipients named in the options."""
        key = address.lower()
        if key in self.refuse:
            return self.refuse[key]
        if key in self.tempfail:
            return self.tempfail[key]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        """Record the message, or drop the connection without a reply (once)."""
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.next_fault and self.next_fault[0] == "554":
            self.next_fault = None
            return "554 5.7.1 Message refused as spam"
        with self.lock:
            if self.refuse_data and len(self.messages) >= self.refuse_data_after:
                return self.refuse_data
            drop = (self.drop_after is not None and not self.dropped
                    and len(self.messages) >= self.drop_after)
            if drop:
                self.dropped += 1
            else:
                self.messages.append((list(envelope.rcpt_tos), bytes(envelope.original_content)))
                # Works for STARTTLS and for implicit TLS (session.ssl is STARTTLS only).
                tls = server.transport.get_extra_info("ssl_object") is not None
                self.sessions.append({"tls": tls,
                                      "authenticated": bool(session.authenticated)})
        fault, self.next_fault = self.next_fault, None
        if fault and fault[0] == "drop" and not drop:
            server.transport.abort()  # taken (recorded above), but no reply ever comes
            return "421 4.3.0 dropped by test server"
        if fault and fault[0] == "late" and not drop:
            await asyncio.sleep(fault[1])
        if drop:
            # abort(): no FIN-after-flush, so the reply below never reaches the client and
            # the message is not delivered; the client sees the connection die mid-DATA.
            server.transport.abort()
            return "421 4.3.0 dropped by test server"
        return "250 OK"


class RunningSmtp:
    """What running_smtp yields: the port, the recorder, and the CA file for TLS."""

    def __init__(self, port: int, handler: RecordingHandler, cafile: str | None):
        self.host = HOST
        self.port = port
        self.handler = handler
        self.cafile = cafile

    @property
    def messages(self) -> list[tuple[list[str], bytes]]:
        """A snapshot of (rcpt_tos, raw bytes) for every accepted message."""
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def sessions(self) -> list[dict[str, bool]]:
        """Per accepted message: whether its session used TLS and had logged in."""
        with self.handler.lock:
            return list(self.handler.sessions)

    @property
    def connections(self) -> int:
        """How many client sessions opened (greeted with EHLO or HELO)."""
        with self.handler.lock:
            return self.handler.connections


class _TrackingController(Controller):
    """A Controller that remembers its SMTP instances so stop() can cut them off."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.instances: list[SMTP] = []

    def factory(self) -> SMTP:
        """Build the per-connection SMTP object and remember it."""
        smtp = super().factory()
        self.instances.append(smtp)
        return smtp

    def abort_connections(self) -> None:
        """Runs in the server loop: close client connections still open, so stop is quick."""
        for smtp in self.instances:
            transport = getattr(smtp, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.abort()


def _authenticator(username: str, password: str):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == username.encode()
              and auth_data.password == password.encode())
        return AuthResult(success=ok, handled=False)
    return check


@contextlib.contextmanager
def running_smtp(refuse: Mapping[str, str] | None = None,
                 tempfail: Mapping[str, str] | None = None,
                 refuse_sender: str | None = None,
                 drop_after: int | None = None,
                 auth: tuple[str, str] | None = None,
                 starttls: bool = False,
                 smtps: bool = False,
                 timeout: float = 10.0,
                 delay: float = 0.0) -> Iterator[RunningSmtp]:
    """Run an SMTP server on 127.0.0.1 for the duration of the block; start and stop bounded."""
    handler = RecordingHandler(refuse, tempfail, refuse_sender, drop_after, delay)
    kwargs: dict = {"server_hostname": "smtp.test", "timeout": timeout}
    with tempfile.TemporaryDirectory(prefix="runletter-smtp-") as tmp:
        cafile = None
        if starttls or smtps:
            import trustme  # only TLS tests need it

            ca = trustme.CA()
            cert = ca.issue_cert(HOST, "localhost")
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert.configure_cert(context)
            cafile = str(Path(tmp) / "ca.pem")
            ca.cert_pem.write_to_path(cafile)
            # STARTTLS upgrades a plain connection; SMTPS (port 465 style) is TLS from the start.
            kwargs["ssl_context" if smtps else "tls_context"] = context
        if auth is not None:
            kwargs["authenticator"] = _authenticator(*auth)
            # Without TLS a test still wants to exercise AUTH (never do this for real). With
            # SMTPS the link is encrypted, but aiosmtpd only recognises STARTTLS as TLS.
            kwargs["auth_require_tls"] = starttls
        controller = _TrackingController(handler, hostname=HOST, port=free_port(),
                                         ready_timeout=START_TIMEOUT, **kwargs)
        controller.start()
        try:
            yield RunningSmtp(controller.port, handler, cafile)
        finally:
            _stop(controller)


def _stop(controller: _TrackingController) -> None:
    """Stop the server within STOP_TIMEOUT, whatever clients are still connected."""
    with contextlib.suppress(RuntimeError):  # loop already closed
        controller.loop.call_soon_threadsafe(controller.abort_connections)
    stopper = threading.Thread(target=controller.stop, daemon=True)
    stopper.start()
    stopper.join(STOP_TIMEOUT)
    if stopper.is_alive():
        raise TimeoutError(f"the test SMTP server did not stop within {STOP_TIMEOUT} s")
