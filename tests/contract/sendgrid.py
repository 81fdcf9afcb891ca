"""SendGrid's v3 `POST /v3/mail/send`, as its documentation describes it.

Pages relied on (read through the docs/pages/code search, 2026):

- "Mail Send API Overview", https://www.twilio.com/docs/sendgrid/api-reference/mail-send
  (JSON body; personalizations[] with to/cc/bcc, subject, headers, substitutions,
  custom_args; from {email, name}; reply_to; subject; content [{type, value}]; headers;
  `Authorization: Bearer <API key>`; 202 on success with an X-Message-Id header; total
  size, attachments included, under 30 MB).
- "Mail Send Errors", https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors
  and the older https://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html
  (every error is 400 {"errors": [{"message", "field", "help"}]}: at most 1000
  personalizations and 1000 recipients per request, "The to parameter is required for all
  personalization objects.", "Does not contain a valid address.", the from / subject /
  content messages; 401, 413 PAYLOAD TOO LARGE, 415 UNSUPPORTED MEDIA TYPE, 429, 500, 503).
- "Personalizations", https://www.twilio.com/docs/sendgrid/for-developers/sending-email/personalizations
  (each personalization is one email; its headers and subject override the message's).
- "Substitution Tags", https://twilio.com/docs/sendgrid/for-developers/sending-email/substitution-tags
  (substitutions work in the subject and the body; string values only).
- "Rate Limits", https://twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits
  (429 with X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset as unix seconds and
  {"errors": [{"field": null, "message": "too many requests"}]}).
- "Responses" / "Errors" of How to use the v3 API
  (https://twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/responses).

Choices where the docs are silent or disagree: the size limit is 30 MB (the current Mail
Send page; an older page recommends 20 MB); the 413 body is the HTML page SendGrid's nginx
answers (sendgrid-nodejs issue #370), not JSON; text/plain must come first and text/html
next ("If present, text/plain must be first, followed by text/html, followed by any other
content." on field "content"); 401 says "authorization required" without a key and "The
provided authorization grant is invalid, expired, or revoked" with a wrong one; a body that
is not JSON is 400 "Bad Request"; substitutions also apply to header values, as the task
asks (SendGrid documents subject and body); mail_settings.sandbox_mode.enable answers 200
and delivers nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from email.utils import formataddr

from tests.contract._common import App, Delivered, Reply, Request, is_address, json_reply

PATH = "/v3/mail/send"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#"
KINDS = ("to", "cc", "bcc")

TOO_LARGE_HTML = (
    "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    "<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
MESSAGES = {
    "personalizations": "The personalizations field is required and must have at least one "
                        "personalization.",
    "too_many": "The personalization block is limited to 1000 personalizations per API "
                "request. You have provided {} personalizations. Please consider splitting "
                "this into multiple requests and resending your request.",
    "recipients": "There is a limit of 1000 total recipients (to + cc + bcc) per request.",
    "to": "The to parameter is required for all personalization objects.",
    "address": "Does not contain a valid address.",
    "duplicate": "Each email address in the personalization block should be unique between "
                 "to, cc, and bcc. We found the first duplicate instance of [{}] in the "
                 "personalizations.{}.{} field.",
    "from": "The from object must be provided for every email send. It is an object that "
            "requires the email parameter, but may also contain a name parameter.  e.g. "
            "{\"email\" : \"example@example.com\"}  or {\"email\" : \"example@example.com\", "
            "\"name\" : \"Example Recipient\"}.",
    "subject": "The subject is required. You can get around this requirement if you use a "
               "template with a subject defined or if every personalization has a subject "
               "defined.",
    "content": "Unless a valid template_id is provided, the content parameter is required. "
               "There must be at least one defined content block. We typically suggest both "
               "text/plain and text/html blocks are included, but only one block is required.",
    "content_value": "The content value must be a string at least one character in length.",
    "content_type": "The content type must be a string at least one character in length.",
    "content_once": "If present, text/plain and text/html may only be provided once.",
    "content_order": "If present, text/plain must be first, followed by text/html, followed "
                     "by any other content.",
    "reply_to": "The reply_to email does not contain a valid address.",
    "headers": "The headers parameter must be an object of string header values.",
    "substitutions": "The substitutions parameter must be an object of string values.",
}
FAULTS = {  # status -> the message fail_next() answers without a body
    400: "Bad Request",
    401: "The provided authorization grant is invalid, expired, or revoked",
    403: "access forbidden",
    429: "too many requests",
    500: "internal server error",
    503: "service unavailable",
}


def errors(status: int, *items: tuple[str, str | None, str | None], recipients: int = 0,
           headers: dict[str, str] | None = None) -> Reply:
    body = {"errors": [{"message": m, "field": f, "help": h} for m, f, h in items]}
    return json_reply(status, body, recipients=recipients, headers=headers or {})


def email_of(obj: object) -> str | None:
    """The address of an {"email", "name"} object, or None when it has none."""
    if isinstance(obj, dict) and isinstance(obj.get("email"), str):
        return obj["email"]
    return None


def named(obj: dict) -> str:
    name = obj.get("name")
    return formataddr((name, obj["email"])) if isinstance(name, str) and name else obj["email"]


def string_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def substitute(text: str, pairs: list[tuple[str, str]]) -> str:
    for key, value in pairs:
        if key in text:
            text = text.replace(key, value)
    return text


class SendGridApp(App):
    name = "sendgrid"
    max_bytes = 30 * 1024 * 1024

    def __init__(self, key: str = "SG.test", keep_bodies: bool = True):
        super().__init__(key, keep_bodies)

    # -- the answer to one request -------------------------------------------------------
    def handle(self, req: Request, rejected: frozenset[str]) -> Reply:
        if req.path != PATH:
            return errors(404, ("not found", None, None))
        if req.method != "POST":
            return errors(405, ("method not allowed", None, None), headers={"Allow": "POST"})
        if req.oversize:
            return self.fault_reply(413)
        scheme, _, key = (req.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return errors(401, ("authorization required", None, None))
        if not secrets.compare_digest(key.strip(), self.key):
            return errors(401, (FAULTS[401], None, None))
        if not (req.headers.get("Content-Type") or "").lower().startswith("application/json"):
            return errors(415, ("Content-Type should be application/json.", None, None))
        try:
            mail = json.loads(req.body)
        except ValueError:
            mail = None
        if not isinstance(mail, dict):
            return errors(400, ("Bad Request", None, None))
        return self._send(mail, rejected)

    def _send(self, mail: dict, rejected: frozenset[str]) -> Reply:
        people = mail.get("personalizations")
        if not isinstance(people, list) or not people:
            return errors(400, (MESSAGES["personalizations"], "personalizations",
                                HELP + "message.personalizations"))
        if len(people) > MAX_PERSONALIZATIONS:
            return errors(400, (MESSAGES["too_many"].format(len(people)), "personalizations",
                                HELP + "message.personalizations"))
        problems: list[tuple[str, str | None, str | None]] = []
        count = 0
        for i, person in enumerate(people):
            count += self._check_personalization(person, i, rejected, problems)
        if count > MAX_RECIPIENTS:
            problems.append((MESSAGES["recipients"], "personalizations",
                             HELP + "message.personalizations"))
        if email_of(mail.get("from")) is None or not is_address(mail["from"]["email"]):
            problems.append((MESSAGES["from"], "from.email", HELP + "message.from"))
        if mail.get("reply_to") is not None and not is_address(email_of(mail["reply_to"]) or ""):
            problems.append((MESSAGES["reply_to"], "reply_to.email", HELP + "message.reply_to"))
        subject = mail.get("subject")
        every_person_has_one = all(isinstance(p, dict) and p.get("subject") for p in people)
        if not (isinstance(subject, str) and subject) and not every_person_has_one:
            problems.append((MESSAGES["subject"], "subject", HELP + "message.subject"))
        problems.extend(self._check_content(mail))
        if mail.get("headers") is not None and not string_map(mail["headers"]):
            problems.append((MESSAGES["headers"], "headers", HELP + "message.headers"))
        if problems:
            return errors(400, *problems, recipients=count)

        reply = Reply(202, b"", None, {"X-Message-Id": secrets.token_urlsafe(16)},
                      recipients=count)
        sandbox = ((mail.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable")
        if sandbox is True:
            reply.status, reply.headers = 200, {}
            return reply
        for person in people:
            addresses = [email_of(r) for kind in KINDS for r in person.get(kind) or ()]
            if not self.keep_bodies:
                reply.delivered_to.extend(addresses)
                continue
            reply.delivered.extend(self._copies(mail, person, addresses))
        return reply

    @staticmethod
    def _check_personalization(person: object, i: int, rejected: frozenset[str],
                               problems: list) -> int:
        """Append what is wrong with personalization i; return its number of recipients."""
        where = f"personalizations.{i}"
        if not isinstance(person, dict):
            problems.append((MESSAGES["to"], f"{where}.to", HELP + "message.personalizations"))
            return 0
        if not isinstance(person.get("to"), list) or not person["to"]:
            problems.append((MESSAGES["to"], f"{where}.to", HELP + "message.personalizations"))
        seen: set[str] = set()
        count = 0
        for kind in KINDS:
            found = person.get(kind)
            if found is None or kind == "to" and not isinstance(found, list):
                continue
            if not isinstance(found, list):
                found = [found]
            for j, recipient in enumerate(found):
                count += 1
                addr = email_of(recipient)
                if addr is None or not is_address(addr) or addr.lower() in rejected:
                    problems.append((MESSAGES["address"], f"{where}.{kind}.{j}.email",
                                     HELP + f"message.personalizations.{kind}"))
                elif addr.lower() in seen:
                    problems.append((MESSAGES["duplicate"].format(addr, i, kind), where,
                                     HELP + "message.personalizations"))
                else:
                    seen.add(addr.lower())
        for name in ("headers", "substitutions", "custom_args"):
            if person.get(name) is not None and not string_map(person[name]):
                message = MESSAGES["substitutions" if name != "headers" else "headers"]
                problems.append((message, f"{where}.{name}", HELP + f"message.{name}"))
        return count

    @staticmethod
    def _check_content(mail: dict) -> list[tuple[str, str | None, str | None]]:
        content = mail.get("content")
        if content is None and mail.get("template_id"):
            return []
        if not isinstance(content, list) or not content:
            return [(MESSAGES["content"], "content", HELP + "message.content")]
        problems = []
        kinds = []
        for i, block in enumerate(content):
            block = block if isinstance(block, dict) else {}
            kind, value = block.get("type"), block.get("value")
            if not isinstance(kind, str) or not kind:
                problems.append((MESSAGES["content_type"], f"content.{i}.type",
                                 HELP + "message.content.type"))
            if not isinstance(value, str) or not value:
                problems.append((MESSAGES["content_value"], f"content.{i}.value",
                                 HELP + "message.content.value"))
            kinds.append(kind)
        if kinds.count("text/plain") > 1 or kinds.count("text/html") > 1:
            problems.append((MESSAGES["content_once"], "content", HELP + "message.content"))
        elif ("text/plain" in kinds and kinds[0] != "text/plain") or (
            "text/html" in kinds and kinds.index("text/html") != int("text/plain" in kinds)
        ):
            problems.append((MESSAGES["content_order"], "content", HELP + "message.content"))
        return problems

    @staticmethod
    def _copies(mail: dict, person: dict, addresses: list[str]) -> list[Delivered]:
        pairs = list((person.get("substitutions") or {}).items())
        subject = substitute(person.get("subject") or mail.get("subject") or "", pairs)
        html = text = ""
        for block in mail.get("content") or ():
            if block["type"] == "text/html":
                html = substitute(block["value"], pairs)
            elif block["type"] == "text/plain":
                text = substitute(block["value"], pairs)
        headers = {**(mail.get("headers") or {}), **(person.get("headers") or {})}
        headers = {name: substitute(value, pairs) for name, value in headers.items()}
        headers["From"] = named(person.get("from") or mail["from"])
        if mail.get("reply_to"):
            headers["Reply-To"] = named(mail["reply_to"])
        return [Delivered(to=addr, subject=subject, html=html, text=text, headers=dict(headers))
                for addr in addresses]

    # -- fail_next() and the records ------------------------------------------------------
    def fault_reply(self, status: int) -> Reply:
        if status == 413:
            return Reply(413, TOO_LARGE_HTML.encode(), "text/html")
        reply = errors(status, (FAULTS.get(status, f"HTTP {status}"), None, None))
        if status == 429:
            reply.headers.update({"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                                  "X-RateLimit-Reset": str(int(time.time()) + 1)})
        return reply

    def recipients_in(self, req: Request) -> int:
        try:
            people = json.loads(req.body)["personalizations"]
            return sum(len(p.get(kind) or ()) for p in people for kind in KINDS)
        except Exception:  # a count for the records only: any shape the body has
            return 0
