"""Address an Edition to one reader: fill the merge slots and headers, nothing more.

Everything that is the same for every reader of an edition (headers, MIME structure, the
quoted-printable encoding of every literal run of HTML and text) is prepared once in
`compile`; per reader we encode only their own values and join bytes. That is what makes
100,000 recipients cheap (see bench/address.py).
"""

from __future__ import annotations

import binascii
import email.utils
import html
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import Header
from urllib.parse import quote

from .config import Config
from .errors import RunletterError
from .model import Edition, Slot
from .tokens import Signer

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"


class HeaderInjection(RunletterError):
    """A value bound for a header carried a line break."""


def header_safe(value: str, what: str) -> str:
    """Refuse CR or LF in any value bound for a header; never pass one through."""
    if "\r" in value or "\n" in value:
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
    """`Name <addr>` with the name RFC 2047-encoded when needed."""
    header_safe(name, "a name")
    header_safe(addr, "an address")
    local, _, domain = addr.rpartition("@")
    if not domain.isascii():  # international domains travel as IDNA (xn--) in headers
        addr = f"{local}@{domain.encode('idna').decode('ascii')}"
    return email.utils.formataddr((name, addr), charset="utf-8")


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


class Addresser:
    """Builds per-recipient messages for one newsletter; compile each edition once."""

    def __init__(self, config: Config, signer: Signer):
        self.config = config
        self.signer = signer
        self.domain = config.sender_email.rpartition("@")[2]
        self.from_header = encode_header(
            "From", format_address(config.sender_name, config.sender_email))
        self.reply_to = encode_header("Reply-To", config.reply_to)
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
                  first_name: str) -> Recipient:
        """A Recipient with its merge values filled in."""
        return Recipient(subscriber_id=subscriber_id, email=email_addr, first_name=first_name,
                         values=self.values_for(post_slug, subscriber_id, email_addr,
                                                first_name))

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
        )

    def message(self, compiled: Compiled, recipient: Recipient, date: str | None = None
                ) -> Message:
        """One reader's message bytes: their headers and slot values around fixed bytes."""
        values = recipient.values
        to = format_address(recipient.first_name, recipient.email)
        unsubscribe = header_safe(values["unsubscribe_url"], "the unsubscribe URL")
        mailto = header_safe(values["unsubscribe_mailto"], "the unsubscribe address")
        parts = [
            compiled.head,
            encode_header("To", to),
            b"Date: " + (date or email.utils.formatdate(time.time())).encode() + CRLF,
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
