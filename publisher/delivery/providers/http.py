"""Shared plumbing for providers that speak an HTTP API (postmark, mailgun, sendgrid).

One `requests.Session` per publish, opened in open() and closed in close(): its pooled
keep-alive connection carries every batch, so a publish pays for one TCP and TLS
handshake, not one per batch. Nothing here retries by itself: a transient failure becomes
FAILED receipts and the ledger decides when to try again (with backoff, honouring the
provider's Retry-After), so waits are visible, bounded and recorded. A failure after the
request may have reached the provider (no answer before the timeout, a reset after the
body went out, an answer cut short) is InDoubt instead: no receipt, the rows stay in
flight and are reported, never sent again by themselves (none of the APIs has an
idempotency key, so a retry could be a second copy).

The common settings are `base_url` (each provider's documented default; EU regions need
another one, tests point it at 127.0.0.1) and `timeout` (seconds, per connect and per read).
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar

import requests
from requests.adapters import HTTPAdapter

from publisher.config import Config
from publisher.delivery.address import Addresser, Recipient
from publisher.delivery.providers.base import (
    ACCEPTED,
    FAILED,
    Batch,
    Provider,
    ProviderConfigError,
    Receipt,
    parse_retry_after,
    plain,
    secret_names,
)
from publisher.delivery.providers.request_errors import (
    InDoubt,
    describe_request_error,
    never_reached,
)
from publisher.delivery.providers.verdicts import COPY, receipt_for
from publisher.errors import RunletterError
from publisher.model import Edition, Slot


def _version() -> str:
    try:
        return metadata.version("runletter")
    except metadata.PackageNotFoundError:
        return "dev"


USER_AGENT = f"runletter/{_version()}"


def parse_rate_limit_reset(value: str | None,
                           now: Callable[[], float] = time.time) -> float | None:
    """SendGrid's `X-RateLimit-Reset` (a unix time) as seconds from now; None if unreadable."""
    if value is None or not value.strip():
        return None
    try:
        reset = float(value.strip())
    except ValueError:
        return None
    return max(0.0, reset - now())


def failed_for_all(recipients: Iterable[Recipient], reason: str,
                   retry_after: float | None = None) -> list[Receipt]:
    """FAILED (transient) receipts for every recipient: the ledger retries them later."""
    return [Receipt(r.subscriber_id, FAILED, reason=reason, retry_after=retry_after)
            for r in recipients]


class Transient(Exception):
    """The request did not complete (connection refused, reset, timed out): try again later."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


BLOCK = 256 * 1024


class ChunkedBody:
    """A request body of byte chunks, sent one after another and never joined.

    A Postmark batch is up to 500 whole messages; joining them would hold the body twice.
    `requests` sends an iterable with a length as-is with that Content-Length (no chunked
    transfer encoding), and urllib3 writes each chunk with sendall().
    """

    def __init__(self, chunks: Sequence[bytes], size: int | None = None):
        self.chunks = chunks
        self.size = sum(len(c) for c in chunks) if size is None else size

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        # Thousands of small chunks cost a sendall() each (1.8 s of 12 in a 20k publish);
        # joining them into blocks of about 256 KB keeps the syscalls few and memory flat.
        block: list[bytes] = []
        size = 0
        for chunk in self.chunks:
            block.append(chunk)
            size += len(chunk)
            if size >= BLOCK:
                yield b"".join(block)
                block, size = [], 0
        if block:
            yield b"".join(block)


@dataclass(frozen=True)
class BulkBody:
    """An edition sent once, for providers that substitute per-recipient variables.

    Each distinct slot (name and default) becomes a variable: `h_<name>_<i>` in the HTML
    and `t_<name>_<i>` in the text, written as the provider's marker (Mailgun's
    `%recipient.h_first_name_0%`, SendGrid's `-h_first_name_0-`). HTML and text need
    separate variables because the HTML value is HTML-escaped and the text value is not;
    defaults are per slot, so a reader without a first name gets each slot's own default.
    """

    html: str
    text: str
    slots: tuple[tuple[str, Slot, bool], ...]  # (variable, slot, html-escaped?)

    @classmethod
    def of(cls, edition: Edition, marker: Callable[[str], str]) -> BulkBody:
        """Cut the edition's slots out into variables written with `marker(variable)`."""
        slots: list[tuple[str, Slot, bool]] = []

        def join(parts: tuple[str | Slot, ...], prefix: str, escaped: bool) -> str:
            keys: dict[Slot, str] = {}
            out = []
            for part in parts:
                if isinstance(part, str):
                    out.append(part)
                    continue
                if part not in keys:
                    keys[part] = f"{prefix}_{part.name}_{len(keys)}"
                    slots.append((keys[part], part, escaped))
                out.append(marker(keys[part]))
            return "".join(out)

        html_text = join(edition.html_parts, "h", True)
        plain_text = join(edition.text_parts, "t", False)
        return cls(html=html_text, text=plain_text, slots=tuple(slots))

    def values(self, values: Mapping[str, str]) -> dict[str, str]:
        """One reader's variables: each slot's value (or its default), escaped for HTML."""
        out = {}
        for variable, slot, escaped in self.slots:
            value = values.get(slot.name) or slot.default
            out[variable] = html.escape(value, quote=True) if escaped else value
        return out


class HttpProvider(Provider):
    """Base for HTTP API providers: settings, one pooled session, error mapping helpers.

    Subclasses set `name`, `max_batch`, `Settings` (with `base_url`, the provider's
    documented default, `timeout`, and its secrets), `SECRET_HELP`, and implement send().
    """

    pool_maxsize: ClassVar[int] = 4
    # secret setting -> what it is, for the "missing" message
    SECRET_HELP: ClassVar[Mapping[str, str]] = {}

    def __init__(self, config: Config, addresser: Addresser, settings: Mapping[str, Any] | Any):
        """Check settings and secrets now, so a typo stops the publish before anything is sent."""
        super().__init__(config, addresser, settings)
        label = self.label or self.name
        for secret in secret_names(self.Settings):
            if not str(getattr(self.settings, secret) or "").strip():
                what = self.SECRET_HELP.get(secret, secret.replace("_", " "))
                raise ProviderConfigError(
                    f"{label}: the {what} is not set; set {self.env_name(secret)} in the "
                    f"environment (never in runletter.toml)")
        base_url = str(self.settings.base_url or "").strip().rstrip("/")
        if not base_url.startswith(("https://", "http://")):
            raise ProviderConfigError(
                f"{label}: base_url must start with https:// (or http:// for a local test "
                f"server), not {self.settings.base_url!r}; set it in "
                f"[providers.{self.name}] or {self.env_name('base_url')}")
        self.base_url = base_url
        try:
            self.timeout = float(self.settings.timeout)
        except (TypeError, ValueError):
            raise ProviderConfigError(f"{label}: timeout must be a number of seconds") from None
        if self.timeout <= 0:
            raise ProviderConfigError(f"{label}: timeout must be more than 0 seconds")
        self.session: requests.Session | None = None

    # -- session ----------------------------------------------------------------------

    def open(self) -> None:
        """One session for the whole publish: pooled keep-alive connections, no retries."""
        if self.session is not None:
            return
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.pool_maxsize,
                              max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self.session = session

    def close(self) -> None:
        """Close the pooled connections."""
        session, self.session = self.session, None
        if session is not None:
            session.close()

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST to base_url + path; requests' own errors become Transient (nothing reached
        the provider), InDoubt (something may have) or config errors."""
        if self.session is None:
            self.open()
        assert self.session is not None
        url = self.base_url + path
        try:
            return self.session.post(url, timeout=self.timeout, allow_redirects=False,
                                     **kwargs)
        except requests.exceptions.SSLError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify" in str(exc):
                raise ProviderConfigError(
                    f"{self.label or self.name}: the TLS certificate of {self.base_url} is "
                    f"not trusted; check base_url (or REQUESTS_CA_BUNDLE for a private CA)"
                ) from None
            # The handshake comes before any byte of the request: provably not sent.
            raise Transient(describe_request_error(exc)) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise ProviderConfigError(
                f"{self.label or self.name}: base_url {self.base_url!r} is not a usable URL "
                f"({exc}); set {self.env_name('base_url')}") from None
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError, ConnectionError) as exc:
            # Refused or never connected: transient by DESIGN §4, so the ledger retries. A
            # read timeout, a reset or an answer cut short can follow a call the provider
            # did take (none of the three has an idempotency key): a retry could be a
            # second copy, so those readers stay in flight instead.
            if never_reached(exc):
                raise Transient(describe_request_error(exc)) from None
            raise InDoubt(describe_request_error(exc)) from None

    # -- receipts ---------------------------------------------------------------------

    def settle(self, batch: Batch, receipts: list[Receipt],
               exc: Transient | InDoubt | ProviderConfigError,
               settled: Collection[int] = ()) -> list[Receipt]:
        """Finish a batch that stopped part-way; every reader not yet settled gets a fate.

        InDoubt: the rest get no receipt (in flight; a reader of a later call of the batch
        was not sent either, but cannot be told apart here, and one report beats a copy).
        Transient: the rest are FAILED (with the provider's Retry-After) and retried later.
        ProviderConfigError: when nothing of the batch was accepted, raise it (the publish
        stops and the ledger un-claims the batch); otherwise keep the receipts we have
        (those messages went out), fail the rest, and raise at the next send().
        `settled` are readers left without a receipt on purpose (outcome unknown).
        """
        done = set(settled) | {r.subscriber_id for r in receipts}
        rest = [r for r in batch.recipients if r.subscriber_id not in done]
        if isinstance(exc, InDoubt):
            return receipts
        if isinstance(exc, Transient):
            return receipts + failed_for_all(rest, f"{self.label or self.name}: {exc.reason}",
                                             exc.retry_after)
        if not any(r.status == ACCEPTED for r in receipts):
            raise exc
        self.stick(exc)
        return receipts + failed_for_all(rest, plain(exc))

    def send_groups(self, batch: Batch, build: Callable[[Recipient], Any],
                    send_group: Callable[[list, list[Receipt]], list[list]]) -> list[Receipt]:
        """The skeleton of a bulk send: each reader's part built (a reader whose part cannot
        be built is rejected, the others go on), then groups posted until none is left
        (`send_group` appends receipts and returns the groups still to send: halves after
        a 413, the rest after a 400 named some readers); a stop part-way is settled."""
        self.check_fatal()
        receipts: list[Receipt] = []
        entries = []
        for recipient in batch.recipients:
            try:
                entries.append(build(recipient))
            except (RunletterError, ValueError, KeyError) as exc:
                receipts.append(receipt_for(recipient.subscriber_id, COPY,
                                            f"cannot build the message: {plain(exc)}"))
        pending = [entries]
        try:
            while pending:
                group = pending.pop()
                if group:
                    pending += send_group(group, receipts)
        except (Transient, InDoubt, ProviderConfigError) as exc:
            return self.settle(batch, receipts, exc)
        return receipts

    def edition_error(self, exc: RunletterError) -> ProviderConfigError:
        """An edition the provider cannot carry (a line break in the sender or subject)."""
        return ProviderConfigError(f"{self.label or self.name}: {plain(exc)}")


def halves(group: list) -> list[list]:
    """A group of recipients split in two, to be sent again as two calls."""
    half = len(group) // 2
    return [group[half:], group[:half]]


def halve_or_refuse(group: list, label: str, said: str, limit: str) -> list[list]:
    """A call refused as too large (413): send it again as two halves, unless it is one
    reader already, which no split can help."""
    if len(group) > 1:
        return halves(group)
    raise ProviderConfigError(f"{label} refused the message as too large ({said}); "
                              f"the edition is over {limit}")


def response_text(response: requests.Response, limit: int = 300) -> str:
    """The start of a response body, on one line, for messages."""
    try:
        text = response.text
    except Exception:  # undecodable body: say nothing rather than fail
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def addresses_named(message: str, addresses: Iterable[tuple[int, Iterable[str]]]) -> set[int]:
    """Subscriber ids whose address an error message names (case-insensitive, whole words).

    Used when a provider refuses a whole call because of some recipients (Mailgun's
    "'to' parameter is not a valid address", SendGrid's "... more than once").
    """
    lowered = message.lower()
    if "@" not in lowered:
        return set()
    named = set()
    for subscriber_id, candidates in addresses:
        for candidate in candidates:
            candidate = candidate.lower()
            if candidate and re.search(r"(?<![\w.+-])" + re.escape(candidate)
                                       + r"(?![\w-]|\.\w)", lowered):
                named.add(subscriber_id)
                break
    return named


def json_or_none(response: requests.Response) -> Any:
    """The response body as JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


__all__ = [
    "addresses_named",
    "BulkBody",
    "ChunkedBody",
    "HttpProvider",
    "InDoubt",
    "Transient",
    "failed_for_all",
    "json_or_none",
    "parse_rate_limit_reset",
    "parse_retry_after",
    "plain",
    "response_text",
]
