"""What every provider's webhook shares: the request as a provider sees it, the report it
makes of one, and the careful reading of an untrusted body (bounded JSON, addresses, text).

A provider verifies a request (`verify_webhook`: credentials from the headers before the
body is read where its scheme allows, then the body) and says what it reports
(`parse_events`); `runletter serve` does the rest (replays, readers, the ledger).
"""

from __future__ import annotations

import array
import base64
import binascii
import email.utils
import hmac
import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from publisher.emails import validate_email

# Seconds a webhook's signed timestamp may be off: Mailgun's documented window, and
# SendGrid's too (it documents none; without one a captured batch could be replayed).
SIGNATURE_WINDOW = 300
MAX_DEPTH = 32  # JSON nesting a webhook may have; providers' payloads nest about 5 deep
# Longer is no provider's: message and event ids are a few dozen characters, and a unix
# timestamp has 10 digits until 2286 (a longer one overflows a float compared to the clock).
MAX_ID = 256
MAX_TIMESTAMP_DIGITS = 12
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# An opening bracket is a step of +1, a closing one of -1 (0xff as a signed byte).
_BRACKET_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class WebhookError(Exception):
    """A webhook request refused before anything changed: an HTTP status and a reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Event:
    """One thing a provider reported about one address."""

    email: str
    kind: str  # bounce | complaint | unsubscribe
    detail: str
    message_ids: tuple[str, ...] = ()
    event_id: str | None = None  # for de-duplication (SendGrid sg_event_id)

    def __post_init__(self):
        """Refuse ids no provider sends (they are looked up and stored as they are)."""
        for value in (*self.message_ids, self.event_id):
            check_id(value)


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook request as a provider sees it: headers at once, the body only when read."""

    headers: Mapping[str, str]
    read: Callable[[], bytes]
    clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class WebhookReport:
    """What a verified webhook request says."""

    events: tuple[Event, ...] = ()
    # An id the provider repeats when it sends the request again. Seen before, the request
    # changes nothing: refused (409) with `replay_refusal` when that is set (a replayed
    # signature), else acknowledged as a duplicate (a retry).
    request_id: str | None = None
    replay_refusal: str = ""
    note: str = ""  # said in the answer (e.g. "subscription confirmation logged")
    log: tuple[str, ...] = field(default=())  # for the operator, e.g. a URL to visit

    def __post_init__(self):
        """Refuse a request id no provider sends (it is stored to recognise replays)."""
        check_id(self.request_id)


def check_id(value: str | None) -> None:
    """A provider's id is None or printable ASCII of at most MAX_ID characters;
    WebhookError(400) otherwise."""
    if value is not None and not (isinstance(value, str) and len(value) <= MAX_ID
                                  and value.isascii() and value.isprintable()):
        raise WebhookError(400, f"an id longer than {MAX_ID} characters or not printable ASCII")


def json_depth(body: bytes) -> int:
    """How deep a JSON text's arrays and objects nest (exact for valid JSON), in linear time."""
    # In valid JSON every backslash starts a two-character escape, read left to right as
    # bytes.replace reads; with escapes gone, every other run between quotes is a string.
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(plain.split(b'"')[::2])
    steps = array.array("b", outside.translate(_BRACKET_STEP, _NOT_BRACKETS))
    return max(itertools.accumulate(steps), default=0)


def read_json(body: bytes) -> Any:
    """An untrusted body as JSON: its nesting bounded before parsing, text that SQLite can
    store; WebhookError(400) otherwise."""
    # json recurses once per level and raises RecursionError near 1000: bound it first.
    if json_depth(body) > MAX_DEPTH:
        raise WebhookError(400, f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(body.decode("utf-8"))
        # A lone surrogate ("\ud800") is valid JSON but not text: SQLite could not store it.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # ValueError includes the Unicode errors
        raise WebhookError(400, "the body is not JSON") from None
    return value


def fresh(timestamp: str, tolerance: int, clock: Callable[[], float]) -> bool:
    """True when a signed unix timestamp is within `tolerance` seconds of the clock."""
    if not (timestamp.isascii() and timestamp.isdigit()
            and len(timestamp) <= MAX_TIMESTAMP_DIGITS):
        return False
    return abs(clock() - int(timestamp)) <= tolerance


def address(value: Any) -> str | None:
    """A plain address from 'a@b' or 'Name <a@b>', or None when it is not one."""
    if not isinstance(value, str):
        return None
    addr = email.utils.parseaddr(value)[1] or value.strip()
    return addr if validate_email(addr) is None else None


def array_of(value: Any, name: str) -> list:
    """A JSON array (absent or null: empty); anything else is a malformed request."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise WebhookError(400, f"{name} is not an array")
    return value


def text(value: Any, limit: int = 200) -> str:
    """A provider's words on one line, cut to `limit` characters."""
    return " ".join(str(value).split())[:limit] if value not in (None, "") else ""


def dict_in(value: Mapping[str, Any], key: str) -> dict:
    """value[key] when it is an object, else an empty one."""
    found = value.get(key)
    return found if isinstance(found, dict) else {}


def basic_auth_ok(authorization: str | None, user: str, password: str) -> bool:
    """True when an HTTP Basic Authorization header carries these credentials (compared in
    constant time)."""
    scheme, _, encoded = (authorization or "").partition(" ")
    try:
        given = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        given = ""
    given_user, sep, given_password = given.partition(":")
    expected = f"{user}:{password}".encode()
    return (scheme.lower() == "basic" and bool(sep)
            and hmac.compare_digest(f"{given_user}:{given_password}".encode(), expected))
