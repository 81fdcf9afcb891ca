"""What SES's answers to a SendEmail call mean: a receipt for the reader, or a config error
that stops the publish (the account, the sender, the credentials), or no receipt at all
when the call may have gone through (in doubt)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from publisher.delivery.address import Recipient
from publisher.delivery.providers.base import (
    FAILED,
    REJECTED,
    ProviderConfigError,
    Receipt,
    parse_retry_after,
)
from publisher.delivery.providers.verdicts import message_refused, receipt_for, ses_verdict

if TYPE_CHECKING:
    from botocore.exceptions import BotoCoreError, ClientError

# What a call that may have reached SES gets instead of a receipt: its row stays in flight.
IN_DOUBT = Receipt(-1, FAILED, reason="in doubt")


def in_doubt_or_failed(rid: int, exc: BotoCoreError) -> Receipt:
    """A call that failed in botocore: IN_DOUBT once the request may have reached SES (the
    connection closed or reset, or no answer before the timeout, after it was sent);
    FAILED (retried) for what proves it did not (no connection was made)."""
    from botocore import exceptions as botoerrors  # optional: comes with boto3 (runletter[ses])

    # ConnectionClosedError and ReadTimeoutError (EndpointConnectionError and
    # ConnectTimeoutError, which prove no connection, are not HTTPClientErrors).
    if isinstance(exc, botoerrors.HTTPClientError):
        return IN_DOUBT
    return Receipt(rid, FAILED, reason=f"{exc.__class__.__name__}: {exc}")

# Error codes that no retry fixes: stop the publish, mark nothing.
ACCOUNT_CODES = {
    "AccountSuspendedException": "the SES account's sending is suspended",
    "SendingPausedException": "sending is paused for this account or configuration set",
    "AccountSendingPausedException": "sending is paused for this account",
    "ConfigurationSetSendingPausedException": "sending is paused for the configuration set",
    "MailFromDomainNotVerifiedException": "the sender's custom MAIL FROM domain is not "
                                          "verified (check its MX and SPF records)",
    "NotFoundException": "SES did not find a resource the call names (is configuration_set "
                         "right, and does it exist in this region?)",
    "ConfigurationSetDoesNotExistException": "the configuration set does not exist in this "
                                             "region",
}
CREDENTIAL_CODES = {
    "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
    "SignatureDoesNotMatch", "IncompleteSignature", "MissingAuthenticationToken",
    "InvalidAccessKeyId", "ExpiredToken", "ExpiredTokenException", "RequestExpired",
    "AuthFailure", "NotAuthorized", "OptInRequired", "AccessDenied", "AccessDeniedException",
}
# Error codes worth a later try.
TRANSIENT_CODES = {
    "Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException",
    "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException", "SlowDown",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure",
    "InternalServerError", "InternalError", "InternalServiceError", "RequestTimeout",
    "RequestTimeoutException", "PriorRequestNotComplete", "BandwidthLimitExceeded",
}
# MessageRejected says these when the account, not the reader, is the problem: the sender
# identity is not verified in this region (or, in the sandbox, the reader is not), or the
# edition itself is refused. Marking every reader bounced for them would be a disaster.
ACCOUNT_REJECTIONS = ("not verified", "did not have authority", "not authorized",
                      "message length")
SANDBOX_HINT = ("verify the sender address or its domain in this region; if the identity "
                "named is a reader's, the account is in the SES sandbox, which sends only to "
                "verified addresses: request production access")


def _error_text(message: str) -> str:
    """The service's words on one line (some front ends answer in XML; keep its Message)."""
    found = re.search(r"<Message>(.*?)</Message>", message, re.S)
    if found:
        message = found.group(1)
    return " ".join(message.split())[:300]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    return parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))


def receipt_for_error(recipient: Recipient, exc: ClientError, sender: str,
                      region: str) -> Receipt:
    """An error answer to a call for `recipient`: their receipt, or ProviderConfigError when
    the account, the sender (`sender`, in `region`) or the request is the problem."""
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code", ""))
    status = int(meta.get("HTTPStatusCode") or 0)
    text = _error_text(str(error.get("Message", "")))
    said = f"{code}: {text}" if text else code
    rid = recipient.subscriber_id
    if code in TRANSIENT_CODES or status == 429 or status >= 500:
        return Receipt(rid, FAILED, reason=said,
                       retry_after=_retry_after(meta.get("HTTPHeaders", {})))
    if code in ACCOUNT_CODES:
        raise ProviderConfigError(f"ses: {ACCOUNT_CODES[code]} ({said})")
    if code in CREDENTIAL_CODES or code.startswith("AccessDenied") or status in (401, 403):
        raise ProviderConfigError(
            f"ses: AWS refused the credentials or their permissions ({said}); check "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and that the key may call "
            "ses:SendEmail (and ses:SendRawEmail) in this region")
    if code == "MessageRejected":
        if any(marker in text.lower() for marker in ACCOUNT_REJECTIONS):
            raise ProviderConfigError(
                f"ses: SES refused the sender {sender} in {region} "
                f"({said}); {SANDBOX_HINT}")
        # Otherwise about the reader's address only when its words say so; a refusal of the
        # message (its content, say) would be the same for every reader: stop, bounce nobody.
        return receipt_for(rid, ses_verdict(text, recipient.email), said, refusal=(
            message_refused(f"ses: SES in {region}", said, "check the post and the sender "
                            f"{sender}'s domain (its SPF, DKIM and DMARC records)")))
    # BadRequestException and any other refusal of the request: when SES names this
    # reader's address, the address is the problem; otherwise the request itself is,
    # and it would fail the same way for every reader: never bounce them all for it.
    if recipient.email.lower() in text.lower():
        return Receipt(rid, REJECTED, reason=said)
    raise ProviderConfigError(f"ses: SES refused the request for {recipient.email} "
                              f"({said}); check the ses settings and the sender")
