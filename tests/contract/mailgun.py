"""Mailgun's `POST /v3/{domain}/messages`, as its documentation describes it.

Pages relied on (read through the docs/pages/issues search, 2026):

- API reference "Messages: Send an email",
  https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages
  (multipart/form-data; from, to (repeatable, comma-separated), cc, bcc, subject, text,
  html, attachment, o:tag, h:X-My-Header, v:my-var, recipient-variables; HTTP Basic auth;
  "Send options (parameters starting with o:, h:, v:, or t:) are limited to 16KB total").
- User manual "Batch Sending",
  https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages/batch-sending
  (repeated `to`, `recipient-variables` JSON keyed by address, %recipient.KEY%, a separate
  message per `to` when recipient variables are given, at most 1,000 recipients per call).
- "API Response Codes", https://documentation.mailgun.com/docs/mailgun/quickstart-guide/responses
  (400 with a JSON {"message"}; 404 without JSON for a wrong endpoint; 429; 500).
- "Send attachments / Attaching Metadata": v: variables reach the reader as the
  X-Mailgun-Variables header.
- The 400 messages ("from parameter is missing", "to parameter is missing", "Need at least
  one of 'text' or 'html' parameters specified", "Too many recipients; max is 1000", the
  16 kB send options one, "'to' parameter is not a valid address. please check
  documentation") as collected in Mailgun error-code libraries; 401 with the text body
  "Forbidden" and 200 {"id": "<...>", "message": "Queued. Thank you."} as mailgun.js,
  django-anymail and the PHP SDK issues show them.

Choices where the docs are silent: a request that is neither multipart/form-data nor
application/x-www-form-urlencoded has no parameters, so it gets "from parameter is
missing" (400) as the real API would answer; "subject parameter is missing" follows the
same pattern; recipient-variables that are not a JSON object of objects, or that miss an
entry or a key a %recipient.KEY% asks for (for any `to`), are a 400 here: stricter than
Mailgun, which would send the placeholder, so that a test catches it. A domain other than
the server's is 404 {"message": "Domain not found: ..."}.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import secrets
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from tests.contract._common import (
    App,
    Delivered,
    Reply,
    Request,
    header_params,
    is_address,
    json_reply,
    split_addresses,
    text_reply,
)

PATH = re.compile(r"^/v3/([^/]+)/messages$")
VARIABLE = re.compile(r"%recipient\.([^%\s]+)%")
SIMPLE_DISPOSITION = re.compile(r'form-data;\s*name="([^"\\]*)"\s*')
MAX_RECIPIENTS = 1000
MAX_OPTIONS = 16 * 1024  # bytes of o:, h:, v:, t: parameters
RECIPIENT_FIELDS = ("to", "cc", "bcc")

FAULTS = {  # status -> the body fail_next() answers without one
    400: {"message": "Bad request"},
    404: {"message": "Not found"},
    429: {"message": "Too many requests"},
    500: {"message": "Internal Server Error"},
    503: {"message": "Service Unavailable"},
}


def bad(message: str, recipients: int = 0) -> Reply:
    return json_reply(400, {"message": message}, recipients=recipients)


class Template:
    """A text with %recipient.KEY% placeholders, split once and filled per recipient."""

    __slots__ = ("parts", "keys")

    def __init__(self, text: str):
        self.parts = VARIABLE.split(text)  # literal, key, literal, key, ..., literal
        self.keys = frozenset(self.parts[1::2])

    def render(self, values: dict) -> str:
        if len(self.parts) == 1:
            return self.parts[0]
        out = []
        for i, part in enumerate(self.parts):
            if i % 2 == 0:
                out.append(part)
            elif part in values:
                out.append(as_text(values[part]))
            else:
                out.append(f"%recipient.{part}%")
        return "".join(out)


def as_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def parse_multipart(body: bytes, boundary: str) -> list[tuple[str, str, bool]]:
    """(name, value, is_file) for each part of a multipart/form-data body."""
    fields = []
    chunks = body.split(b"--" + boundary.encode("latin-1"))
    if len(chunks) < 3:
        raise ValueError("no multipart parts")
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a part without a blank line after its headers")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        disposition = ""
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-disposition":
                disposition = value.strip()
        simple = SIMPLE_DISPOSITION.fullmatch(disposition)
        if simple:  # the common case, parsed without the email package
            params = {"name": simple.group(1)}
        else:
            _, params = header_params(disposition, "content-disposition")
        if "name" not in params:
            raise ValueError("a part without a name")
        is_file = "filename" in params
        fields.append((params["name"], "" if is_file else data.decode("utf-8", "replace"),
                       is_file))
    return fields


class MailgunApp(App):
    name = "mailgun"

    def __init__(self, key: str = "key-test", keep_bodies: bool = True,
                 domain: str = "mg.example.org"):
        super().__init__(key, keep_bodies)
        self.domain = domain
        self.sent = itertools.count(1)

    # -- the answer to one request -------------------------------------------------------
    def handle(self, req: Request, rejected: frozenset[str]) -> Reply:
        match = PATH.match(req.path)
        if not match:
            return text_reply(404, "404 page not found")
        if req.method != "POST":
            return text_reply(405, "Method Not Allowed", headers={"Allow": "POST"})
        if not self._authorized(req.headers.get("Authorization") or ""):
            return text_reply(401, "Forbidden")
        if match.group(1).lower() != self.domain.lower():
            return json_reply(404, {"message": f"Domain not found: {match.group(1)}"})
        try:
            form = self._form(req)
        except ValueError:
            return bad("Bad request: the multipart/form-data body could not be read")
        return self._send(form, rejected)

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == "api" and secrets.compare_digest(password, self.key)

    @staticmethod
    def _form(req: Request) -> dict[str, list[str]]:
        kind, params = header_params(req.headers.get("Content-Type") or "")
        if kind == "multipart/form-data":
            if not params.get("boundary"):
                raise ValueError("no boundary")
            pairs = [(n, v) for n, v, is_file in parse_multipart(req.body, params["boundary"])
                     if not is_file]
        elif kind == "application/x-www-form-urlencoded":
            pairs = parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        else:
            pairs = []  # not a form: Mailgun sees no parameters at all
        form: dict[str, list[str]] = {}
        for name, value in pairs:
            form.setdefault(name, []).append(value)
        return form

    def _send(self, form: dict[str, list[str]], rejected: frozenset[str]) -> Reply:
        def first(name: str) -> str:
            return (form.get(name) or [""])[0]

        recipients = {name: [a for value in form.get(name, ()) for a in split_addresses(value)]
                      for name in RECIPIENT_FIELDS}
        count = sum(len(found) for found in recipients.values())
        if not first("from").strip():
            return bad("from parameter is missing", count)
        if not recipients["to"]:
            return bad("to parameter is missing", count)
        if not first("subject"):
            return bad("subject parameter is missing", count)
        if not (first("text") or first("html") or first("amp-html") or first("template")):
            return bad("Need at least one of 'text' or 'html' parameters specified", count)
        if count > MAX_RECIPIENTS:
            return bad(f"Too many recipients; max is {MAX_RECIPIENTS}", count)
        for name, found in recipients.items():
            for addr in found:
                if not is_address(addr) or addr.lower() in rejected:
                    return bad(f"'{name}' parameter is not a valid address. please check "
                               f"documentation", count)
        options = sum(len(n) + len(v) for n, values in form.items()
                      if n[:2] in ("o:", "h:", "v:", "t:") for v in values)
        if options > MAX_OPTIONS:
            return bad("Send options (parameters starting with o:, h:, or v:) are limited "
                       "to 16 kB total", count)

        variables = None
        if "recipient-variables" in form:
            try:
                parsed = json.loads(first("recipient-variables"))
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict) or not all(isinstance(v, dict)
                                                       for v in parsed.values()):
                return bad("recipient-variables parameter is not a valid JSON object of "
                           "objects keyed by recipient address", count)
            variables = {addr.lower(): values for addr, values in parsed.items()}

        subject = Template(first("subject"))
        html = Template(first("html"))
        text = Template(first("text"))
        custom = {name[2:]: Template(values[0]) for name, values in form.items()
                  if name.startswith("h:") and len(name) > 2}
        used = subject.keys | html.keys | text.keys
        for template in custom.values():
            used |= template.keys
        for addr in recipients["to"] if used else ():
            entry = (variables or {}).get(addr.lower())
            if entry is None:
                return bad(f"recipient-variables has no entry for '{addr}', but the message "
                           f"uses %recipient.{min(used)}%", count)
            missing = sorted(used - entry.keys())
            if missing:
                return bad(f"recipient-variables of '{addr}' have no '{missing[0]}', but the "
                           f"message uses %recipient.{missing[0]}%", count)

        reply = json_reply(200, {"id": self._message_id(), "message": "Queued. Thank you."},
                           recipients=count)
        addresses = [a for name in RECIPIENT_FIELDS for a in recipients[name]]
        if not self.keep_bodies:
            reply.delivered_to = addresses
            return reply
        base = {"From": first("from")}
        plain = {name[2:]: values[0] for name, values in form.items()
                 if name.startswith("v:") and len(name) > 2}
        if plain:
            base["X-Mailgun-Variables"] = json.dumps(plain)
        for addr in addresses:
            values = (variables or {}).get(addr.lower(), {})
            headers = dict(base)
            headers.update((name, t.render(values)) for name, t in custom.items())
            reply.delivered.append(Delivered(
                to=addr, subject=subject.render(values), html=html.render(values),
                text=text.render(values), headers=headers))
        return reply

    def _message_id(self) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        return f"<{stamp}.{next(self.sent)}.{secrets.token_hex(8).upper()}@{self.domain}>"

    # -- fail_next() and the records ------------------------------------------------------
    def fault_reply(self, status: int) -> Reply:
        if status == 401:
            return text_reply(401, "Forbidden")
        return json_reply(status, FAULTS.get(status, {"message": f"HTTP {status}"}))

    def recipients_in(self, req: Request) -> int:
        try:
            form = self._form(req)
        except Exception:  # a count for the records only: any shape the body has
            return 0
        return sum(len(split_addresses(v)) for n in RECIPIENT_FIELDS for v in form.get(n, ()))
