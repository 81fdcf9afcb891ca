"""Signed reader tokens: HMAC-SHA256 over (purpose, reader, expiry), URL-safe.

Hand-written on the stdlib rather than itsdangerous because a token is minted for every
recipient of every send: this is two hashes and a base64, a few microseconds each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from publisher.emails import mailbox_key, unicode_form
from publisher.errors import Finding, RunletterError

SECRET_ENV = "RUNLETTER_SECRET"
SECRET_FILE = ".runletter-secret"
PURPOSES = ("unsubscribe", "preferences", "confirm", "ready", "calendar")
# A reader id or an expiry as `sign` writes it: lowercase hex that fits the store's signed
# 64-bit integers (a longer one would overflow SQLite's and PostgreSQL's and fail the page).
_HEX = re.compile(r"[0-9a-f]{1,16}")
ID_MAX = 2**63 - 1


@dataclass(frozen=True)
class TokenData:
    """What a valid token vouches for."""

    purpose: str
    subscriber_id: int
    expires: int  # unix seconds; 0 = never
    item: str = ""  # what the token is about beyond the reader (a gated step for "ready")


def _b64(data: bytes) -> str:
    # 18 bytes encode to exactly 24 characters: no padding to strip.
    return base64.urlsafe_b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Mints and checks tokens with one secret; a key per purpose, so tokens don't cross."""

    def __init__(self, secret: str | bytes):
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 16:
            raise RunletterError(f"{SECRET_ENV} is too short: use at least 16 random characters "
                                 "(python -c 'import secrets; print(secrets.token_urlsafe())')")
        self._keys = {p: hmac.new(key, p.encode(), hashlib.sha256).digest() for p in PURPOSES}

    def _mac(self, purpose: str, body: str, bind: str) -> bytes:
        # The bound address is in the MAC, not the token: a reader id that SQLite hands out
        # again after a removal does not inherit the removed reader's links. Bound to the
        # mailbox, not the spelling (for an ASCII address the same text as before).
        return hmac.digest(self._keys[purpose], f"{body}|{mailbox_key(bind)}".encode(),
                           "sha256")[:18]

    def _genuine(self, purpose: str, body: str, bind: str, mac: bytes) -> bool:
        """The MAC is this reader's: over their mailbox, or over the Unicode spelling that
        links sent before addresses were stored as punycode (schema 0007) were bound to."""
        if hmac.compare_digest(self._mac(purpose, body, bind), mac):
            return True
        legacy = unicode_form(bind).lower()
        return legacy != mailbox_key(bind) and hmac.compare_digest(hmac.digest(
            self._keys[purpose], f"{body}|{legacy}".encode(), "sha256")[:18], mac)

    def sign(self, purpose: str, subscriber_id: int, ttl: int | None = None,
             bind: str = "", item: str = "") -> str:
        """A token for one reader (id, bound to their address) and purpose, valid for ttl
        seconds (or forever); `item` (e.g. a step) is carried in the token and signed."""
        expires = int(time.time()) + ttl if ttl else 0
        body = f"{subscriber_id:x}.{expires:x}"
        if item:
            body += "." + base64.urlsafe_b64encode(item.encode()).decode("ascii").rstrip("=")
        return f"{body}.{_b64(self._mac(purpose, body, bind))}"

    def verify(self, purpose: str, token: str, now: float | None = None,
               bind: str | Callable[[int], str | None] = "") -> TokenData | None:
        """The token's data if it is genuine, for this purpose, this reader's address (bind,
        or a function from the token's reader id to their address) and not expired."""
        try:
            *body_parts, mac_text = token.split(".")
            if len(body_parts) not in (2, 3):
                return None
            id_hex, exp_hex = body_parts[:2]
            if not (_HEX.fullmatch(id_hex) and _HEX.fullmatch(exp_hex)
                    and int(id_hex, 16) <= ID_MAX):
                return None
            subscriber_id, expires = int(id_hex, 16), int(exp_hex, 16)
            address = bind(subscriber_id) if callable(bind) else bind
            if address is None:
                return None
            if not self._genuine(purpose, ".".join(body_parts), address, _unb64(mac_text)):
                return None
            item = _unb64(body_parts[2]).decode() if len(body_parts) == 3 else ""
        except (ValueError, KeyError, UnicodeDecodeError):
            return None
        if expires and (now if now is not None else time.time()) > expires:
            return None
        return TokenData(purpose=purpose, subscriber_id=subscriber_id, expires=expires,
                         item=item)


def refuse_if_shared(path: Path) -> None:
    """Refuse a secret file that its group or other users can read or write."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Whoever can read the secret can sign any reader's unsubscribe or preferences link.
        raise RunletterError(Finding(str(path), None, f"other users can read this signing "
                                     f"secret (mode {mode:03o}); run: chmod 600 {path}"))


def load_secret(root: Path, create: bool) -> tuple[str | None, str | None]:
    """The signing secret from the environment, else from the project's git-ignored file.

    With create=True and no secret anywhere, one is generated into the file (mode 0600);
    the second value is then a message telling the user so.
    """
    env = os.environ.get(SECRET_ENV)
    if env:
        return env, None
    path = root / SECRET_FILE
    if path.exists():
        refuse_if_shared(path)
        return path.read_text(encoding="utf-8").strip(), None
    if not create:
        return None, None
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value, (f"generated a signing secret for reader links in {SECRET_FILE} (git-ignored, "
                   f"mode 0600); set {SECRET_ENV} to use your own")
