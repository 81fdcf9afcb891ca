"""Postmark's batch endpoint, `POST /email/batch`, as its documentation describes it.

Pages relied on (read through the docs/pages/code search, 2026):

- "Send batch emails", https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails
  (up to 500 messages and 50 MB per call; the request is a JSON array of messages and the
  response "a matching JSON array" of {ErrorCode, Message, MessageID, SubmittedAt, To}).
- "Email API" reference, https://postmarkapp.com/developer/api/email-api (fields From, To,
  Cc, Bcc, Subject, Tag, HtmlBody, TextBody, ReplyTo, Headers [{Name, Value}], TrackOpens,
  TrackLinks, Metadata, Attachments, MessageStream; To/Cc/Bcc "Max 50").
- "API overview", https://postmarkapp.com/developer/api/overview (X-Postmark-Server-Token,
  "header name and value are case insensitive"; 401 for a wrong or missing token; 422 with
  {ErrorCode, Message}; 413 Payload Too Large; 429; 500) and its error-code table
  (10 bad or missing token, 300 invalid email request, 402 invalid JSON, 403 incompatible
  JSON, 406 inactive recipient, 409 JSON required, 410 too many batch messages,
  1235 "The 'MessageStream' provided does not exist on this server.").
- Support: "What does Error Code 300 mean?", https://postmarkapp.com/support/article/1180-what-does-errorcode-300-mean
  (a TextBody or HtmlBody is required; at most 50 recipients), and "What are the Attachment
  and Email Size Limits?", https://postmarkapp.com/support/article/1056-what-are-the-attachment-and-email-size-limits
- Batch calls answer 200 even when single messages fail validation; check each entry:
  ActiveCampaign/postmark-php wiki "Sending Batches" and ActiveCampaign/postmark.js issue #44.

Choices where the docs are silent: a wrong shape (unknown or misspelt field name, Headers
that are not [{Name, Value}], a non-string field) refuses the whole call with 422 and
ErrorCode 403 "Incompatible JSON" (the real API's JSON reader is more lenient: this server
is stricter on purpose, so a misspelt field fails a test instead of vanishing); an unknown
MessageStream refuses the whole call with 422 / 1235 as the single-send endpoint does.
A message without From, To or a body, with a bad address, more than 50 recipients or an
inactive recipient gets its own entry's ErrorCode (300 / 406) and the rest are sent.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from tests.contract._common import (
    App,
    Delivered,
    Reply,
    Request,
    is_address,
    json_reply,
    split_addresses,
)

PATH = "/email/batch"
MAX_MESSAGES = 500
MAX_RECIPIENTS = 50  # To + Cc + Bcc of one message
FIELDS = (
    "From", "To", "Cc", "Bcc", "Subject", "Tag", "HtmlBody", "TextBody", "ReplyTo",
    "Headers", "TrackOpens", "TrackLinks", "Metadata", "Attachments", "MessageStream",
)
FIELD_SET = frozenset(FIELDS)
STRING_FIELDS = frozenset({
    "From", "To", "Cc", "Bcc", "Subject", "Tag", "HtmlBody", "TextBody", "ReplyTo",
    "MessageStream",
})
TRACK_LINKS = frozenset({"None", "HtmlAndText", "HtmlOnly", "TextOnly"})
DEFAULT_STREAMS = ("outbound", "broadcast")

MISSING_TOKEN = (
    "No Account or Server API tokens were supplied in the HTTP headers. Please add a header "
    "for either X-Postmark-Server-Token or X-Postmark-Account-Token."
)
WRONG_TOKEN = (
    "The Server Token you provided in the X-Postmark-Server-Token request header was "
    "invalid. Please verify that you are using a valid token."
)
INACTIVE = (
    "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
    "addresses: {}. Inactive recipients are ones that have generated a hard bounce, a spam "
    "complaint, or a manual suppression."
)
STREAM_MISSING = "The 'MessageStream' provided does not exist on this server."
NO_BODY = "Provide either email TextBody or HtmlBody or both."

FAULTS = {  # status -> (ErrorCode, Message) answered by fail_next() without a body
    401: (10, WRONG_TOKEN),
    413: (300, "The request exceeded Postmark's size limit of 50 MB for a batch."),
    422: (300, "Invalid email request: validation failed for the email request JSON data."),
    429: (429, "Rate Limit Exceeded: we have detected an excessive volume of requests "
               "originating from your application, please reduce the concurrency and "
               "request rate of your requests."),
    500: (0, "An error has occurred. This is an issue with Postmark's servers processing "
             "your request."),
    503: (100, "Maintenance: the Postmark API is offline for maintenance."),
}


def error(status: int, code: int, message: str) -> Reply:
    return json_reply(status, {"ErrorCode": code, "Message": message})


class PostmarkApp(App):
    name = "postmark"
    max_bytes = 50 * 1024 * 1024

    def __init__(self, key: str = "test-token", keep_bodies: bool = True,
                 streams: tuple[str, ...] = DEFAULT_STREAMS):
        super().__init__(key, keep_bodies)
        self.streams = frozenset(streams)

    # -- the answer to one request -------------------------------------------------------
    def handle(self, req: Request, rejected: frozenset[str]) -> Reply:
        if req.path != PATH:
            return json_reply(404, {"Message": "The requested resource does not exist."})
        if req.method != "POST":
            return json_reply(405, {"Message": f"The requested resource does not support "
                                               f"http method '{req.method}'."},
                              headers={"Allow": "POST"})
        if req.oversize:
            return error(413, *FAULTS[413])
        token = (req.headers.get("X-Postmark-Server-Token") or "").strip()
        if not token:
            return error(401, 10, MISSING_TOKEN)
        if token.lower() != self.key.lower():
            return error(401, 10, WRONG_TOKEN)
        content_type = (req.headers.get("Content-Type") or "").lower()
        if not content_type.startswith("application/json"):
            return error(422, 409, "JSON required: your HTTP request doesn't have the Accept "
                                   "and Content-Type headers set to application/json.")
        try:
            batch = json.loads(req.body)
        except ValueError:  # includes UnicodeDecodeError
            return error(422, 402, "Invalid JSON: the JSON data you provided is "
                                   "syntactically incorrect.")
        if not isinstance(batch, list):
            return error(422, 403, "Incompatible JSON: the batch endpoint takes a JSON array "
                                   "of messages.")
        if len(batch) > MAX_MESSAGES:
            return error(422, 410, f"Too many batch messages: your batched request contains "
                                   f"{len(batch)} messages; the limit is {MAX_MESSAGES}.")
        for i, msg in enumerate(batch):
            problem = shape_problem(msg, i)
            if problem:
                return error(422, 403, "Incompatible JSON: " + problem)
        for msg in batch:
            stream = msg.get("MessageStream")
            if stream is not None and stream not in self.streams:
                return error(422, 1235, STREAM_MISSING)

        entries: list[dict] = []
        reply = Reply(200)
        for msg in batch:
            entries.append(self._one(msg, rejected, reply))
        reply.body = json.dumps(entries, separators=(",", ":")).encode("utf-8")
        return reply

    def _one(self, msg: dict, rejected: frozenset[str], reply: Reply) -> dict:
        """Validate and send one message of the batch; its entry of the response array."""
        fields = {name: split_addresses(msg.get(name) or "") for name in ("To", "Cc", "Bcc")}
        addresses = fields["To"] + fields["Cc"] + fields["Bcc"]
        reply.recipients += len(addresses)
        sender = (msg.get("From") or "").strip()
        if not sender:
            return {"ErrorCode": 300, "Message": "Invalid 'From' value."}
        if not all(is_address(a) for a in split_addresses(sender)):
            return {"ErrorCode": 300, "Message": f"Invalid 'From' address: '{sender}'."}
        if not fields["To"]:
            return {"ErrorCode": 300, "Message": "Zero recipients specified"}
        for name, found in fields.items():
            for addr in found:
                if not is_address(addr):
                    return {"ErrorCode": 300,
                            "Message": f"Invalid '{name}' address: '{msg.get(name)}'."}
        if len(addresses) > MAX_RECIPIENTS:
            return {"ErrorCode": 300, "Message": f"Invalid email request: a message may have "
                                                 f"at most {MAX_RECIPIENTS} recipients "
                                                 f"(To, Cc and Bcc together)."}
        if not msg.get("HtmlBody") and not msg.get("TextBody"):
            return {"ErrorCode": 300, "Message": NO_BODY}
        inactive = [a for a in addresses if a.lower() in rejected]
        if inactive:
            return {"ErrorCode": 406, "Message": INACTIVE.format(", ".join(inactive))}

        if self.keep_bodies:
            headers = {"From": sender}
            if msg.get("ReplyTo"):
                headers["Reply-To"] = msg["ReplyTo"]
            for header in msg.get("Headers") or ():
                headers[header["Name"]] = header["Value"]
            for addr in addresses:
                reply.delivered.append(Delivered(
                    to=addr, subject=msg.get("Subject") or "", html=msg.get("HtmlBody") or "",
                    text=msg.get("TextBody") or "", headers=dict(headers)))
        else:
            reply.delivered_to.extend(addresses)
        return {
            "ErrorCode": 0,
            "Message": "OK",
            "MessageID": str(uuid.uuid4()),
            "SubmittedAt": datetime.now().astimezone().isoformat(),
            "To": msg["To"],
        }

    # -- fail_next() and the records ------------------------------------------------------
    def fault_reply(self, status: int) -> Reply:
        code, message = FAULTS.get(status, (0, f"HTTP {status}"))
        return error(status, code, message)

    def recipients_in(self, req: Request) -> int:
        try:
            batch = json.loads(req.body)
            return sum(len(split_addresses(m.get(name) or ""))
                       for m in batch for name in ("To", "Cc", "Bcc"))
        except Exception:  # a count for the records only: any shape the body has
            return 0


def shape_problem(msg: object, i: int) -> str | None:
    """Why message i does not have the documented shape, or None."""
    if not isinstance(msg, dict):
        return f"message {i} is not a JSON object."
    unknown = [name for name in msg if name not in FIELD_SET]
    if unknown:
        return (f"message {i} has unknown field(s) {', '.join(map(repr, unknown))}; the "
                f"fields are (case-sensitive) {', '.join(FIELDS)}.")
    for name in STRING_FIELDS.intersection(msg):
        if msg[name] is not None and not isinstance(msg[name], str):
            return f"'{name}' of message {i} must be a string."
    if msg.get("TrackOpens") is not None and not isinstance(msg["TrackOpens"], bool):
        return f"'TrackOpens' of message {i} must be true or false."
    if msg.get("TrackLinks") is not None and msg["TrackLinks"] not in TRACK_LINKS:
        return (f"'TrackLinks' of message {i} must be one of "
                f"{', '.join(sorted(TRACK_LINKS))}.")
    headers = msg.get("Headers")
    if headers is not None and not (
        isinstance(headers, list)
        and all(isinstance(h, dict) and set(h) == {"Name", "Value"}
                and isinstance(h["Name"], str) and h["Name"]
                and isinstance(h["Value"], str) for h in headers)
    ):
        return f"'Headers' of message {i} must be a list of {{\"Name\", \"Value\"}} objects."
    metadata = msg.get("Metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and all(isinstance(v, str | int | float) for v in metadata.values())
    ):
        return f"'Metadata' of message {i} must be an object of string values."
    attachments = msg.get("Attachments")
    if attachments is not None and not (
        isinstance(attachments, list) and all(isinstance(a, dict) for a in attachments)
    ):
        return f"'Attachments' of message {i} must be a list of objects."
    return None
