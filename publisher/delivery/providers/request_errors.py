"""What a failed HTTP request proves: nothing reached the provider (try again), or the
request may have been taken (the readers are in flight: a retry could be a second copy).
"""

from __future__ import annotations

import requests
import urllib3.exceptions


class InDoubt(Exception):
    """The request may have reached the provider, but no answer was read: its readers get
    no receipt (their rows stay in flight, reported, and are not retried by themselves)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def never_reached(exc: BaseException) -> bool:
    """True when a request error proves nothing reached the provider: the connection was
    never made (refused, DNS, connect timeout). Anything later may have been taken."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause: BaseException | None = exc
    for _ in range(10):
        if cause is None:
            return False
        if isinstance(cause, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
            return True
        reason = getattr(cause, "reason", None)
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return True
        cause = (cause.args[0] if cause.args and isinstance(cause.args[0], BaseException)
                 else cause.__cause__ or cause.__context__)
    return False


def describe_request_error(exc: requests.RequestException) -> str:
    """A short, readable reason for a failed request (without the long urllib3 chain)."""
    if isinstance(exc, requests.ConnectTimeout):
        kind = "connect timed out"
    elif isinstance(exc, requests.ReadTimeout):
        kind = "no answer before the timeout"
    elif isinstance(exc, requests.exceptions.ChunkedEncodingError):
        kind = "connection broken while reading the answer"
    elif isinstance(exc, requests.ConnectionError):
        kind = "connection failed"
    else:
        kind = exc.__class__.__name__
    cause: BaseException | None = exc
    detail = ""
    for _ in range(10):  # the innermost cause says what happened (reset, refused)
        if cause is None:
            break
        detail = str(cause) or detail
        cause = cause.__cause__ or cause.__context__
    detail = " ".join(detail.split())
    if len(detail) > 160:
        detail = detail[:157] + "..."
    return f"{kind}: {detail}" if detail else kind
