"""Send through any SMTP server: one connection, reused for every message of the publish.

Opening a connection costs a TCP handshake, a TLS handshake and a login; per message that
would dominate the send and trip the connection-rate limits most relays have. So the
provider connects once in open(), keeps the connection across batches, and reconnects only
when the server drops it.

Outcomes map onto receipts by RFC 5321 and RFC 3463 (see verdicts.py): a permanent answer
about the recipient's address is REJECTED (the reader is bounced); a 4xx, or a refusal of
the recipient that is not about the address (a 5.7.x policy answer to RCPT), is FAILED (the
ledger retries later); a refusal of the message (DATA-stage 5xx, 5.7.x, 5.6.x, 5.3.4) raises
MessageRefused and changes no reader. A lost connection is retried once on a fresh
connection, except after the final '.' of DATA went out: then the server may have the
message, which gets no receipt (in flight, reported, never re-sent alone). Problems no retry
can fix (bad password, STARTTLS refused, an untrusted certificate, the server refusing our
envelope sender) raise ProviderConfigError.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

from publisher.config import Config
from publisher.delivery.address import Addresser, Message, Recipient, message_date
from publisher.delivery.providers.base import (
    ACCEPTED,
    FAILED,
    TIMEOUT,
    Batch,
    Provider,
    ProviderConfigError,
    Receipt,
    plain,
    secret,
)
from publisher.delivery.providers.verdicts import (
    COPY,
    DATA,
    MAIL,
    MESSAGE,
    RCPT,
    message_refused,
    receipt_for,
    refusal_hint,
    smtp_verdict,
)
from publisher.errors import RunletterError

SECURITY_MODES = ("starttls", "ssl", "none")


class _ConnectionLost(Exception):
    """The connection died (or the server said 421) before this message was accepted."""


class _InDoubt(Exception):
    """The connection died after the final '.' of DATA went out, before the reply: the
    server may have taken the message, so it is neither retried nor failed (in flight)."""


class _DotWatch:
    """Notes when the final '.' of DATA has gone out in full (only DATA's terminator ends
    in CRLF '.' CRLF; a send cut short never sets it)."""

    dot_sent = False

    def send(self, s: bytes | str) -> None:
        super().send(s)  # type: ignore[misc]
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.dot_sent = True


class _SMTP(_DotWatch, smtplib.SMTP):
    """smtplib.SMTP that knows whether DATA's '.' went out."""


class _SMTPSSL(_DotWatch, smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL that knows whether DATA's '.' went out."""


def _reply(code: int, text: bytes | str) -> str:
    """`550 5.1.1 No such user`: the server's own words, on one line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def _text(text: bytes | str) -> str:
    """A reply's text as a string, for reading its enhanced status code."""
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


@dataclass(frozen=True)
class Settings:
    """[providers.smtp]: the server and how to reach it; the password only from the
    environment."""

    host: str = "localhost"
    port: int = 587
    security: str = "starttls"  # starttls | ssl | none
    username: str = ""
    password: str = secret()
    timeout: float = TIMEOUT
    verify_tls: bool = True
    cafile: str = ""
    envelope_from: str = ""
    local_hostname: str = ""


class SmtpProvider(Provider):
    """Delivers each recipient's MIME message with SMTP over one reused connection.

    Settings ([providers.smtp] or RUNLETTER_SMTP_*): host, port, security
    (starttls | ssl | none), username, timeout, verify_tls, cafile, envelope_from,
    local_hostname. The password comes only from RUNLETTER_SMTP_PASSWORD.
    """

    name: ClassVar[str] = "smtp"
    max_batch: ClassVar[int] = 100
    Settings = Settings

    def __init__(self, config: Config, addresser: Addresser, settings: Mapping[str, Any] | Any):
        """Check the settings now, so a typo stops the publish before anything is sent."""
        super().__init__(config, addresser, settings)
        security = str(self.settings.security).lower()
        if security not in SECURITY_MODES:
            raise ProviderConfigError(
                f"smtp setting 'security' must be one of {', '.join(SECURITY_MODES)}, "
                f"not {self.settings.security!r}")
        self.security = security
        if self.settings.username and not self.settings.password:
            raise ProviderConfigError(
                "smtp: username is set but the password is empty; "
                "set RUNLETTER_SMTP_PASSWORD in the environment")
        self.envelope_from = self.settings.envelope_from or config.sender_email
        self.where = f"{self.settings.host}:{self.settings.port}"
        self._smtp: smtplib.SMTP | None = None
        self._connected_once = False

    # -- connection -------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        """The context for STARTTLS or SMTPS: system CAs, or `cafile` for a private CA."""
        try:
            context = ssl.create_default_context(cafile=self.settings.cafile or None)
        except OSError as exc:  # ssl.SSLError included
            raise ProviderConfigError(
                f"smtp: cannot load cafile {self.settings.cafile!r}: {exc}") from None
        if not self.settings.verify_tls:
            # Only for a test relay: encryption without knowing who is at the other end.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        """A ready connection: greeted, encrypted as configured, logged in.

        Raises ProviderConfigError for what no retry fixes, and OSError/SMTPException for
        what might be transient (refused, timed out, dropped).
        """
        host, port = self.settings.host, int(self.settings.port)
        timeout = float(self.settings.timeout)
        local = self.settings.local_hostname or None
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = _SMTPSSL(
                    host, port, local_hostname=local, timeout=timeout,
                    context=self._tls_context())
            else:
                smtp = _SMTP(host, port, local_hostname=local, timeout=timeout)
        except ssl.SSLCertVerificationError as exc:
            raise ProviderConfigError(
                f"smtp: the certificate of {self.where} is not trusted ({exc.verify_message}); "
                f"set cafile to its CA bundle") from None
        try:
            # Without TCP_NODELAY a reused connection stalls ~40 ms per message: Nagle holds
            # the last segment of DATA until the server's delayed ACK (seen in bench/smtp.py).
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if self.security == "starttls":
                self._starttls(smtp)
            if self.settings.username:
                self._login(smtp)
        except BaseException:
            self._drop(smtp)
            raise
        return smtp

    def _starttls(self, smtp: smtplib.SMTP) -> None:
        """Upgrade to TLS; a server that will not is a config error, never a plain fallback."""
        if not smtp.has_extn("starttls"):
            raise ProviderConfigError(
                f"smtp: {self.where} does not offer STARTTLS; use security = \"ssl\" or "
                f"\"none\" if that is really intended")
        try:
            code, text = smtp.starttls(context=self._tls_context())
        except ssl.SSLCertVerificationError as exc:
            raise ProviderConfigError(
                f"smtp: the certificate of {self.where} is not trusted ({exc.verify_message}); "
                f"set cafile to its CA bundle") from None
        # smtplib returns a refusal instead of raising; sending in clear is not an option.
        if code != 220:
            raise ProviderConfigError(f"smtp: {self.where} refused STARTTLS: {_reply(code, text)}")
        smtp.ehlo()  # RFC 3207: forget what was said in clear, ask again

    def _login(self, smtp: smtplib.SMTP) -> None:
        """AUTH with the configured username and the password from the environment."""
        try:
            smtp.login(self.settings.username, self.settings.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise ProviderConfigError(
                f"smtp: {self.where} refused the login for {self.settings.username!r}: "
                f"{_reply(exc.smtp_code, exc.smtp_error)}; check RUNLETTER_SMTP_PASSWORD"
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise ProviderConfigError(
                f"smtp: {self.where} does not offer AUTH on this connection; "
                f"check security or leave username empty") from None

    @staticmethod
    def _drop(smtp: smtplib.SMTP | None) -> None:
        """Close a socket without a word: used when the connection is already broken."""
        if smtp is None:
            return
        try:
            smtp.close()
        except OSError:
            pass

    def open(self) -> None:
        """Connect once for the whole publish; failing here stops it before anything is sent."""
        if self._smtp is not None:
            return
        try:
            self._smtp = self._connect()
        except OSError as exc:  # smtplib's own exceptions are OSErrors too
            # On the very first connect nothing has gone out yet and nothing is likely to
            # change by retrying each batch: wrong host, port or firewall.
            raise ProviderConfigError(
                f"smtp: cannot connect to {self.where} ({self.security}): "
                f"{exc.__class__.__name__}: {exc}") from None
        self._connected_once = True

    def close(self) -> None:
        """Say QUIT and close the connection; errors here change nothing that was sent."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except OSError:
            self._drop(smtp)

    # -- sending ----------------------------------------------------------------------

    def send(self, batch: Batch) -> list[Receipt]:
        """Send each recipient's message; one receipt per recipient, never raising for one.

        Raises ProviderConfigError only when nothing of this batch was accepted yet (or
        for a config problem met in the previous batch), so a receipt is never lost for a
        message that went out.
        """
        self.check_fatal()
        if not self._connected_once:
            self.open()
        receipts: list[Receipt] = []
        date = message_date()
        recipients = batch.recipients
        if self._smtp is None:
            # Dropped at the end of an earlier batch: one fresh try for this batch.
            try:
                self._smtp = self._connect()
            except ProviderConfigError as exc:
                self.stick(exc)
                raise
            except OSError as exc:
                return self._fail_rest(recipients, f"cannot reconnect to {self.where}: {exc}")
        for index, recipient in enumerate(recipients):
            try:
                message = self.addresser.message(batch.compiled, recipient, date)
            except (RunletterError, ValueError) as exc:
                # A line break in this reader's name, an address the headers cannot carry:
                # their message cannot be built, and no retry would change that.
                receipts.append(receipt_for(recipient.subscriber_id, COPY,
                                            f"cannot build the message: {plain(exc)}"))
                continue
            try:
                receipt = self._send_retrying(recipient, message)
            except ProviderConfigError as exc:
                if not any(r.status == ACCEPTED for r in receipts):
                    self.close()
                    raise
                self.stick(exc)
                receipts += self._fail_rest(recipients[index:], plain(exc))
                break
            except _ConnectionLost as exc:
                receipts += self._fail_rest(recipients[index:], str(exc))
                break
            except _InDoubt as exc:  # this reader stays in flight; the rest never went
                self._drop(self._smtp)
                self._smtp = None
                receipts += self._fail_rest(recipients[index + 1:], f"not sent: {exc}")
                break
            receipts.append(receipt)
        return receipts

    def _send_retrying(self, recipient: Recipient, message: Message) -> Receipt:
        """One message; on a lost connection, reconnect once and send it again.

        Raises _ConnectionLost when the reconnect or the second attempt fails too: the
        server is down or flapping, and the rest of the batch would only wait on timeouts.
        """
        try:
            return self._send_one(recipient, message)
        except _ConnectionLost as first:
            self._drop(self._smtp)
            self._smtp = None
            try:
                self._smtp = self._connect()  # a ProviderConfigError passes through
            except OSError as exc:
                raise _ConnectionLost(f"connection to {self.where} lost ({first}); "
                                      f"reconnect failed: {exc}") from None
            try:
                return self._send_one(recipient, message)
            except _ConnectionLost as second:
                self._drop(self._smtp)
                self._smtp = None
                raise _ConnectionLost(f"connection to {self.where} lost twice ({first}; "
                                      f"{second})") from None

    def _send_one(self, recipient: Recipient, message: Message) -> Receipt:
        """One SMTP transaction, mapped to a receipt; connection trouble raises _ConnectionLost."""
        rid = recipient.subscriber_id
        smtp = self._smtp
        if smtp is None:
            raise _ConnectionLost("not connected")
        options = [] if message.to.isascii() else ["SMTPUTF8"]
        smtp.dot_sent = False  # type: ignore[attr-defined]
        try:
            refused = smtp.sendmail(self.envelope_from, [message.to], message.data,
                                    mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            # sendmail already sent RSET (all recipients refused), so the connection is
            # ready for the next transaction; on 421 it closed the socket instead.
            code, text = exc.recipients.get(message.to, (0, b"refused"))
            return self._by_code(rid, code, text, RCPT)
        except smtplib.SMTPSenderRefused as exc:
            return self._sender_refused(rid, exc)
        except smtplib.SMTPDataError as exc:
            return self._by_code(rid, exc.smtp_code, exc.smtp_error, DATA)
        except smtplib.SMTPNotSupportedError as exc:
            # A non-ASCII address and a server without SMTPUTF8: no retry will help, but the
            # mailbox may well exist, so the reader is not bounced for it.
            return receipt_for(rid, COPY, f"{exc}")
        except UnicodeEncodeError:
            return receipt_for(rid, COPY, "address cannot be encoded for SMTP")
        except smtplib.SMTPServerDisconnected as exc:
            self._lost(smtp, str(exc) or "server disconnected")
        except smtplib.SMTPResponseException as exc:
            # Any other reply out of place (e.g. to HELO after a reset): treat it by its code.
            return self._by_code(rid, exc.smtp_code, exc.smtp_error, "SMTP")
        except smtplib.SMTPException as exc:
            # Anything else smtplib can say about one transaction: worth a later retry.
            return Receipt(rid, FAILED, reason=f"{exc.__class__.__name__}: {exc}")
        except OSError as exc:  # reset, broken pipe, timeout, TLS error mid-stream
            self._lost(smtp, f"{exc.__class__.__name__}: {exc}")
        if message.to in refused:  # only with several recipients; kept for completeness
            code, text = refused[message.to]
            return self._by_code(rid, code, text, RCPT)
        return Receipt(rid, ACCEPTED, provider_id=message.message_id)

    def _lost(self, smtp: smtplib.SMTP, reason: str) -> NoReturn:
        """A connection lost mid-transaction: in doubt once DATA's '.' went out (the server
        may have queued it: no retry, no receipt), otherwise worth one reconnect."""
        if getattr(smtp, "dot_sent", False):
            raise _InDoubt(f"connection to {self.where} lost after the message was sent, "
                           f"before the server answered ({reason})")
        raise _ConnectionLost(reason)

    def _sender_refused(self, rid: int, exc: smtplib.SMTPSenderRefused) -> Receipt:
        """MAIL FROM refused: for good (5xx) it is about our sender, for every reader."""
        if smtp_verdict(exc.smtp_code, _text(exc.smtp_error), MAIL) == MESSAGE:
            raise ProviderConfigError(
                f"smtp: {self.where} refused the envelope sender {self.envelope_from!r}: "
                f"{_reply(exc.smtp_code, exc.smtp_error)}; check envelope_from and the "
                f"account's sending rights") from None
        return self._by_code(rid, exc.smtp_code, exc.smtp_error, MAIL)

    def _by_code(self, rid: int, code: int, text: bytes | str, stage: str) -> Receipt:
        """421 means reconnect; any other reply is judged by `verdicts.smtp_verdict`: the
        reader's address (rejected), worth a later try (failed) or the message (raises)."""
        reason = _reply(code, text)
        if code == 421:
            raise _ConnectionLost(f"server closing the connection at {stage}: {reason}")
        verdict = smtp_verdict(code, _text(text), stage)
        refusal = message_refused(f"smtp: {self.where}", f"at {stage}: {reason}",
                                  refusal_hint(code, _text(text)))
        return receipt_for(rid, verdict, reason or f"transient error at {stage}",
                           refusal=refusal)

    def _fail_rest(self, recipients: tuple[Recipient, ...], reason: str) -> list[Receipt]:
        """FAILED (transient) receipts for recipients we could not try: the ledger retries."""
        return [Receipt(r.subscriber_id, FAILED, reason=reason) for r in recipients]
