"""Address an Edition to one reader: fill the merge slots and headers, nothing more.

Everything that is the same for every reader of an edition (headers, MIME structure, the
quoted-printable encoding of every literal run of HTML and text) is prepared once in
`compile`; per reader we encode only their own values and join bytes. That is what makes
100,000 recipients cheap (see bench/address.py).
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.utils
import functools
import html
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from typing import Protocol
from urllib.parse import quote

from publisher import clock
from publisher.config import Config
from publisher.content.when import zone
from publisher.delivery.tokens import Signer
from publisher.errors import RunletterError
from publisher.model import Edition, Slot

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"
MAX_LINE = 78  # RFC 5322 2.1.1's "SHOULD"
# Longest token that still fits a line after "From: " or on a folded line of its own.
MAX_TOKEN = MAX_LINE - len("From: ")
Q_PAYLOAD = MAX_TOKEN - len("=?utf-8?q??=")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM_RE = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_DOT_ATOM_ADDR_RE = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_ATOM_PHRASE_RE = re.compile(rf"{_ATEXT}+(?: {_ATEXT}+)*")
# Every character str.splitlines() breaks on: encoded, they are harmless in our bytes, but a
# stdlib tool that decodes and re-folds the header (a relay, a filter) turns them into CRLF.
_LINE_BREAK_RE = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# What RFC 2047 5(3) lets an encoded-word in a phrase carry unencoded.
_Q_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


class HeaderInjection(RunletterError):
    """A value bound for a header carried a line break."""


def header_safe(value: str, what: str) -> str:
    """Refuse any line break (CR, LF, U+2028, NEL…) in a value bound for a header."""
    if _LINE_BREAK_RE.search(value):
        raise HeaderInjection(f"refused: {what} contains a line break, which would forge "
                              f"mail headers: {value[:40]!r}")
    return value


def encode_header(name: str, value: str) -> bytes:
    """One header line, RFC 2047-encoded and folded when it is not plain short ASCII."""
    header_safe(value, name)
    if value.isascii() and len(name) + len(value) < 76:
        return f"{name}: {value}".encode("ascii") + CRLF
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}".encode("ascii") + CRLF


def format_address(name: str, addr: str) -> str:
    """`Name <addr>` on one line, for APIs that take an address string (not a header)."""
    header_safe(name, "a name")
    header_safe(addr, "an address")
    spec = _addr_spec(addr)
    return " ".join((*_phrase(name), f"<{spec}>")) if name else spec


def address_header(field: str, name: str, addr: str) -> bytes:
    """`Field: name <addr>` with only the display name encoded (RFC 5322/2047), folded."""
    header_safe(name, "a name")
    header_safe(addr, "an address")
    spec = _addr_spec(addr)
    if not name:
        return f"{field}: {spec}".encode("ascii") + CRLF
    line = f"{field}: {name} <{spec}>"
    # The common case: a short plain name needs no quoting, encoding or folding.
    if (len(line) <= MAX_LINE and name.isascii() and _ATOM_PHRASE_RE.fullmatch(name)
            and "=?" not in name):
        return line.encode("ascii") + CRLF
    return _fold(f"{field}:", (*_phrase(name), f"<{spec}>")).encode("ascii") + CRLF


def _addr_spec(addr: str) -> str:
    """The address as a header carries it: IDNA domain, a non-dot-atom local part quoted."""
    if _DOT_ATOM_ADDR_RE.fullmatch(addr):
        return addr
    local, _, domain = addr.rpartition("@")
    if not domain.isascii():  # international domains travel as IDNA (xn--) in headers
        domain = domain.encode("idna").decode("ascii")
    if not _DOT_ATOM_RE.fullmatch(local):
        # Only addresses stored before validation was strict get here; quoting keeps even
        # those from breaking the header.
        local = _quoted(local)
    return f"{local}@{domain}"


def _quoted(text: str) -> str:
    """An RFC 5322 quoted-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=4096)
def _phrase(name: str) -> tuple[str, ...]:
    """A display name as header tokens to be joined by spaces (or folds): atoms, one
    quoted-string, or RFC 2047 encoded-words; each short enough to fit a folded line."""
    if name.isascii() and name.isprintable() and "=?" not in name:
        # "=?" could read as an encoded-word, so such names are encoded rather than quoted.
        if _ATOM_PHRASE_RE.fullmatch(name):
            words = tuple(name.split(" "))
        else:
            words = (_quoted(name),)
        if all(len(word) <= MAX_TOKEN for word in words):
            return words
    return _encoded_words(name)


def _encoded_words(text: str) -> tuple[str, ...]:
    """`text` as Q-encoded words (RFC 2047 5(3) phrase rules), split between characters."""
    words, current = [], ""
    for char in text:
        piece = _q_char(char)
        if len(current) + len(piece) > Q_PAYLOAD:
            words.append(current)
            current = ""
        current += piece
    words.append(current)
    return tuple(f"=?utf-8?q?{word}?=" for word in words)


def _q_char(char: str) -> str:
    if char in _Q_SAFE:
        return char
    if char == " ":
        return "_"
    return "".join(f"={byte:02X}" for byte in char.encode("utf-8"))


def _fold(start: str, tokens: tuple[str, ...]) -> str:
    """Tokens joined by spaces, folded (CRLF before the space) to keep lines within 78."""
    lines, line = [], start
    for token in tokens:
        if len(line) + 1 + len(token) > MAX_LINE and line != start:
            lines.append(line)
            line = ""
        line += " " + token
    lines.append(line)
    return "\r\n".join(lines)


def message_date(when: float | None = None) -> str:
    """An RFC 5322 Date: in UTC, marked +0000 (-0000 would say the zone is unknown)."""
    moment = clock.now() if when is None else datetime.fromtimestamp(when, UTC)
    return email.utils.format_datetime(moment)


def _qp(data: str) -> bytes:
    """Quoted-printable with CRLF line ends; a soft break ends every run so runs can join."""
    encoded = binascii.b2a_qp(data.encode("utf-8"), istext=True).replace(b"\n", CRLF)
    if not encoded.endswith(CRLF):
        encoded += SOFT_BREAK
    return encoded


@dataclass(frozen=True)
class Recipient:
    """One reader of one batch, with the merge values their message needs."""

    subscriber_id: int
    email: str
    first_name: str
    values: Mapping[str, str]

    @property
    def message_id(self) -> str:
        """Stable per reader and post, so a re-send is recognisably the same message."""
        return self.values["message_id"]


@dataclass(frozen=True)
class Message:
    """One recipient's email, MIME bytes ready for SMTP or a raw-MIME API."""

    to: str
    message_id: str
    data: bytes


@dataclass(frozen=True)
class Compiled:
    """An edition prepared for addressing: fixed bytes plus the slots between them."""

    edition: Edition
    head: bytes
    text_parts: tuple[bytes | Slot, ...]
    html_parts: tuple[bytes | Slot, ...]
    text_head: bytes  # preamble, boundary and the text part's headers
    html_head: bytes  # boundary and the HTML part's headers
    tail: bytes
    needs: frozenset[str] = frozenset()  # the slots the edition holds


RACE_SLOTS = frozenset({"race_name", "race_date", "weeks_to_race"})
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


class RaceFacts(Protocol):
    """What a reader's race merge values come from (a ledger Delivery has these)."""

    race_date: str | None
    race_name: str
    timezone: str


def race_values(reader: RaceFacts, default_zone: str) -> dict[str, str]:
    """race_name, race_date ("28 March 2027") and weeks_to_race (whole weeks from the
    reader's local date now to race day, rounded down); empty without a race date."""
    if not reader.race_date:
        return {"race_name": reader.race_name, "race_date": "", "weeks_to_race": ""}
    race = dt.date.fromisoformat(reader.race_date)
    today = clock.now().astimezone(zone(reader.timezone, default_zone)).date()
    return {"race_name": reader.race_name,
            "race_date": f"{race.day} {MONTHS[race.month - 1]} {race.year}",
            "weeks_to_race": str((race - today).days // 7)}


class Addresser:
    """Builds per-recipient messages for one newsletter; compile each edition once."""

    def __init__(self, config: Config, signer: Signer):
        self.config = config
        self.signer = signer
        self.domain = config.sender_email.rpartition("@")[2]
        self.from_header = address_header("From", config.sender_name, config.sender_email)
        self.reply_to = address_header("Reply-To", "", config.reply_to)
        self.mailto_prefix = (f"mailto:{quote(config.unsubscribe_mailto, safe='@')}"
                              "?subject=unsubscribe%20")

    def values_for(self, post_slug: str, subscriber_id: int, email_addr: str,
                   first_name: str) -> dict[str, str]:
        """Merge values for one reader: first name, signed links, the Message-ID."""
        unsubscribe = self.signer.sign("unsubscribe", subscriber_id, bind=email_addr)
        preferences = self.signer.sign("preferences", subscriber_id, bind=email_addr)
        return {
            "first_name": first_name,
            "email": email_addr,
            "unsubscribe_url": self.config.archive_url(f"unsubscribe/{unsubscribe}"),
            # Tokens are URL-safe already, so only the space needs quoting.
            "unsubscribe_mailto": f"{self.mailto_prefix}{unsubscribe}",
            "preferences_url": self.config.archive_url(f"preferences/{preferences}"),
            "message_id": f"<{post_slug}.{subscriber_id}@{self.domain}>",
        }

    def recipient(self, post_slug: str, subscriber_id: int, email_addr: str,
                  first_name: str, reader: RaceFacts | None = None,
                  needs: frozenset[str] = frozenset()) -> Recipient:
        """A Recipient with its merge values filled in (race values and sequence links only
        when the edition has slots for them)."""
        values = self.values_for(post_slug, subscriber_id, email_addr, first_name)
        if needs & RACE_SLOTS and reader is not None:
            values.update(race_values(reader, self.config.schedule.timezone))
        if "ready_url" in needs:
            token = self.signer.sign("ready", subscriber_id, bind=email_addr, item=post_slug)
            values["ready_url"] = self.config.archive_url(f"ready/{token}")
        if "calendar_url" in needs:
            token = self.signer.sign("calendar", subscriber_id, bind=email_addr)
            values["calendar_url"] = self.config.archive_url(f"calendar/{token}.ics")
        return Recipient(subscriber_id=subscriber_id, email=email_addr, first_name=first_name,
                         values=values)

    def compile(self, edition: Edition) -> Compiled:
        """Everything about an edition's messages that no reader changes, encoded once."""
        header_safe(edition.subject, "the subject")
        boundary = f"=_rl_{secrets.token_hex(12)}"  # '=_' never occurs in QP output
        head = b"".join([
            self.from_header,
            self.reply_to,
            encode_header("Subject", edition.subject),
            b"MIME-Version: 1.0" + CRLF,
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" + CRLF,
            f"X-Runletter-Edition: {edition.post_slug}/{edition.goal}".encode() + CRLF,
            f'Content-Type: multipart/alternative; boundary="{boundary}"'.encode() + CRLF,
        ])
        part_head = (b"Content-Type: text/%s; charset=utf-8" + CRLF
                     + b"Content-Transfer-Encoding: quoted-printable" + CRLF + CRLF)
        delimiter = f"--{boundary}".encode()
        return Compiled(
            edition=edition,
            head=head,
            text_parts=tuple(p if isinstance(p, Slot) else _qp(p) for p in edition.text_parts),
            html_parts=tuple(p if isinstance(p, Slot) else _qp(p) for p in edition.html_parts),
            text_head=(CRLF + b"This is a multi-part message in MIME format." + CRLF + CRLF
                       + delimiter + CRLF + part_head % b"plain"),
            html_head=CRLF + delimiter + CRLF + part_head % b"html",
            tail=CRLF + delimiter + b"--" + CRLF,
            needs=edition.slots,
        )

    def message(self, compiled: Compiled, recipient: Recipient, date: str | None = None
                ) -> Message:
        """One reader's message bytes: their headers and slot values around fixed bytes."""
        values = recipient.values
        unsubscribe = header_safe(values["unsubscribe_url"], "the unsubscribe URL")
        mailto = header_safe(values["unsubscribe_mailto"], "the unsubscribe address")
        parts = [
            compiled.head,
            address_header("To", recipient.first_name, recipient.email),
            b"Date: " + (date or message_date()).encode() + CRLF,
            b"Message-ID: " + header_safe(recipient.message_id, "Message-ID").encode() + CRLF,
            f"List-Unsubscribe: <{unsubscribe}>,\r\n <{mailto}>".encode() + CRLF,
            compiled.text_head,
        ]
        parts += [p if isinstance(p, bytes) else _qp(values.get(p.name) or p.default)
                  for p in compiled.text_parts]
        parts.append(compiled.html_head)
        parts += [p if isinstance(p, bytes)
                  else _qp(html.escape(values.get(p.name) or p.default, quote=True))
                  for p in compiled.html_parts]
        parts.append(compiled.tail)
        return Message(to=recipient.email, message_id=recipient.message_id,
                       data=b"".join(parts))
