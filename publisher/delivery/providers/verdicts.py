"""What a provider's refusal is about, and what it does to the reader and the run.

Four verdicts, by RFC 5321 reply codes and RFC 3463 enhanced status codes (class.subject.detail):

* ADDRESS  a permanent answer about this recipient's address (RCPT 550/551/553, enhanced
           5.1.1/5.1.2/5.1.3/5.1.6/5.1.10 or 5.2.1, a provider's "inactive" or "invalid
           address" result): the row is rejected and the reader marked bounced.
* COPY     only this reader's copy cannot go, for good, and their address is not to blame
           (their message cannot be built, a per-reader field refused): the row is
           rejected; the reader's status is left alone.
* RETRY    nothing lasting, or a refusal of this recipient that is not about the address
           (any 4xx, a 5.7.x policy answer to RCPT, a mailbox full): the row fails and is
           tried again later; repeated, it still never bounces the reader.
* MESSAGE  a refusal of the message or of the sender (any DATA-stage 5xx not about the
           address, 5.7.x policy, 5.6.x content, 5.3.4 / 5.2.3 size, 5.1.7 / 5.1.8 sender,
           an HTTP provider's request-level error): no reader changes, the publish stops
           (MessageRefused) and says why; the rows not yet sent stay sendable.

Only an answer about one recipient's address may change that reader: a refusal of the
message looks the same for every reader, and bouncing them one by one would empty the list.
Every provider maps its answers through here.
"""

from __future__ import annotations

import re

from publisher.delivery.providers.base import FAILED, REJECTED, MessageRefused, Receipt

ADDRESS, COPY, RETRY, MESSAGE = "address", "copy", "retry", "message"
VERDICTS = (ADDRESS, COPY, RETRY, MESSAGE)

MAIL, RCPT, DATA = "MAIL FROM", "RCPT", "DATA"  # the SMTP stages a reply can answer

_ENHANCED = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?![\w.])")
# (subject, detail) of the enhanced codes that are about the destination address.
ADDRESS_DETAILS = frozenset({(1, 1), (1, 2), (1, 3), (1, 6), (1, 10), (2, 1)})
# ... about the sender's address (1.7, 1.8) or the message's size (2.3, 3.4).
SENDER_OR_SIZE = frozenset({(1, 7), (1, 8), (2, 3), (3, 4)})
CONTENT, POLICY = 6, 7  # subjects: media and content; security or policy
ADDRESS_REPLIES = frozenset({550, 551, 553})  # mailbox unavailable, not local, name not allowed


def enhanced_code(code: int, text: str) -> tuple[int, int, int] | None:
    """The RFC 3463 code a reply's text starts with (`5.1.1 No such user`), or None; a code
    whose class contradicts the reply's (`550 4.1.1`) is not trusted."""
    found = _ENHANCED.match(text)
    if found is None:
        return None
    status = (int(found.group(1)), int(found.group(2)), int(found.group(3)))
    return status if status[0] == code // 100 else None


def smtp_verdict(code: int, text: str, stage: str) -> str:
    """What a 4xx or 5xx SMTP reply to `stage` (MAIL, RCPT, DATA, or another command) is
    about. A transaction carries one recipient, so an address code after DATA can only be
    about that reader; any other refusal of DATA is a refusal of the message."""
    if code < 500:
        return RETRY
    status = enhanced_code(code, text)
    detail = status[1:] if status else None
    if stage == MAIL or detail in SENDER_OR_SIZE:
        return MESSAGE
    if detail in ADDRESS_DETAILS:
        return ADDRESS if stage in (RCPT, DATA) else RETRY
    if stage == DATA or (detail is not None and detail[0] == CONTENT):
        return MESSAGE
    if stage == RCPT and detail is None and code in ADDRESS_REPLIES:
        return ADDRESS
    # A 5.7.x policy answer to RCPT (this recipient's server will not take mail from us),
    # a mailbox full, an unclear reply: not about the address, and maybe not for good.
    return RETRY


# SES's MessageRejected is about the message unless its words are about the reader's address.
_SENDER_WORDS = ("sender", "from address", "source", "return-path", "reply-to", "mail from")


def names_sender(text: str) -> bool:
    """True when a refusal's words are about our sender fields: an address it names there
    is the author's own (who may be a reader too), not a reader's to bounce."""
    lowered = text.lower()
    return "'from'" in lowered or any(word in lowered for word in _SENDER_WORDS)


def ses_verdict(text: str, address: str) -> str:
    """What SES's MessageRejected (after the account's own refusals are told apart) is
    about: the reader's address when its words name it or an address that is not ours."""
    lowered = text.lower()
    if names_sender(text):
        return MESSAGE
    if address.lower() in lowered or "address" in lowered:
        return ADDRESS
    return MESSAGE


def sendgrid_field_verdict(field: str) -> str:
    """A 400 error's `personalizations.N…` field: their address (`.to`, `.email`) or only
    another part of their copy (headers, substitutions), which is not the address's fault."""
    parts = field.lower().split(".")
    return ADDRESS if any(p in ("to", "email", "cc", "bcc") for p in parts[2:]) else COPY


def refusal_hint(code: int, text: str) -> str:
    """What the author can do about a refused message, by its enhanced status code."""
    status = enhanced_code(code, text) if code else None
    detail = status[1:] if status else None
    if detail in ((2, 3), (3, 4)):
        return "the message is too large for the server: make the post smaller"
    if detail in ((1, 7), (1, 8)):
        return "check [sender] email (and envelope_from) in runletter.toml"
    if detail is not None and detail[0] == CONTENT:
        return "the server refused the content: check the post"
    return ("check the SPF, DKIM and DMARC records of the sender's domain and the "
            "account's right to send as [sender] email")


def message_refused(where: str, said: str, hint: str) -> MessageRefused:
    """The one line a publish stopped by a refused message ends with."""
    return MessageRefused(f"{where} refused the message ({said}); no reader was changed and "
                          f"the readers not sent stay to be sent: {hint}, then run publish "
                          f"again")


def receipt_for(subscriber_id: int, verdict: str, reason: str,
            retry_after: float | None = None, refusal: MessageRefused | None = None
            ) -> Receipt:
    """The receipt a verdict gives a reader; MESSAGE raises `refusal` (or a plain one)."""
    if verdict == ADDRESS:
        return Receipt(subscriber_id, REJECTED, reason=reason)
    if verdict == COPY:
        return Receipt(subscriber_id, REJECTED, reason=reason, bounce=False)
    if verdict == RETRY:
        return Receipt(subscriber_id, FAILED, reason=reason, retry_after=retry_after)
    raise refusal or message_refused("the provider", reason, refusal_hint(0, ""))


__all__ = ["ADDRESS", "COPY", "DATA", "MAIL", "MESSAGE", "RCPT", "RETRY", "VERDICTS",
           "enhanced_code", "message_refused", "names_sender", "receipt_for", "refusal_hint",
           "sendgrid_field_verdict", "ses_verdict", "smtp_verdict"]
