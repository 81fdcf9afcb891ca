"""What the three contract servers share: records, replies, the request, address parsing.

Nothing here knows a provider; each provider module (postmark, mailgun, sendgrid) is an
`App` that turns one `Request` into one `Reply`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from typing import Any, ClassVar


@dataclass(frozen=True)
class Delivered:
    """One copy of one accepted message, as its reader receives it (variables substituted)."""

    to: str  # the bare address, e.g. "ana@example.org"
    subject: str
    html: str
    text: str
    headers: dict[str, str]  # From, Reply-To when set, and every custom header


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request the server got. status is 0 when the server dropped the connection."""

    method: str
    path: str
    status: int
    recipients: int  # addresses (To + Cc + Bcc) in that call, counted as well as the body allowed
    size: int  # body bytes
    # When the request arrived, by the server's clock (a test may lend it its fake clock);
    # left out of ==, so records compare by what was sent.
    at: float = field(default=0.0, compare=False)


@dataclass
class Request:
    method: str
    path: str
    headers: Message  # case-insensitive .get()
    body: bytes
    size: int
    oversize: bool  # the body passed the provider's size limit: it was read and thrown away


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    recipients: int = 0
    delivered: list[Delivered] = field(default_factory=list)  # when bodies are kept
    delivered_to: list[str] = field(default_factory=list)  # when only counts are kept


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_reply(status: int, obj: Any, **kwargs: Any) -> Reply:
    return Reply(status, dumps(obj), **kwargs)


def text_reply(status: int, text: str, **kwargs: Any) -> Reply:
    return Reply(status, text.encode("utf-8"), "text/plain; charset=utf-8", **kwargs)


def header_params(value: str, name: str = "content-type") -> tuple[str, dict[str, str]]:
    """Split `text/plain; charset="x"` into ("text/plain", {"charset": "x"}), quotes undone."""
    msg = Message()
    msg[name] = value
    params = msg.get_params(header=name) or [("", "")]
    main = params[0][0].strip().lower()
    return main, {k.lower(): str(v) for k, v in params[1:]}


def split_addresses(value: str) -> list[str]:
    """Bare addresses in one address-list field ("a@x, Bee <b@y>"); an unparsable one is
    returned as given, so that is_address() can refuse it."""
    if not any(c in value for c in ',<"('):
        bare = value.strip()
        return [bare] if bare else []
    found = [addr for _name, addr in getaddresses([value]) if addr]
    return found or [value.strip()]


def is_address(addr: str) -> bool:
    local, at, domain = addr.rpartition("@")
    return bool(at and local and "." in domain and not any(c.isspace() for c in addr))


class App:
    """One provider's API. Subclasses implement handle(), fault_reply() and recipients_in()."""

    name: ClassVar[str] = ""
    max_bytes: ClassVar[int | None] = None  # larger bodies are drained and answered 413

    def __init__(self, key: str, keep_bodies: bool = True):
        self.key = key
        self.keep_bodies = keep_bodies

    def handle(self, req: Request, rejected: frozenset[str]) -> Reply:
        raise NotImplementedError

    def fault_reply(self, status: int) -> Reply:
        """The documented answer with this status, for fail_next() without a body."""
        raise NotImplementedError

    def recipients_in(self, req: Request) -> int:
        """Best effort count of the addresses in a request the server answers without reading."""
        return 0
