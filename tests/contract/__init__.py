"""Contract servers: real HTTP servers on 127.0.0.1 that speak the documented send APIs of
Postmark (`POST /email/batch`), Mailgun (`POST /v3/{domain}/messages`) and SendGrid
(`POST /v3/mail/send`), for the provider adapters' tests and for the benchmark.

    from tests.contract import running

    with running("postmark") as server:            # token "test-token"
        ...  # the adapter posts to server.url + "/email/batch"
        server.requests      # [RequestRecord(method, path, status, recipients, size, at)]
        server.clock = clock # what stamps `at` (default time.monotonic; tests lend a fake one)
        server.delivered     # [Delivered(to, subject, html, text, headers)], one per copy
        server.counts()      # Counter: address -> copies delivered
        server.fail_next(429, times=2)   # documented body, Retry-After: 1, nothing delivered
        server.drop_next()               # read the request, close without an answer
        server.reject("gone@example.org")  # permanent refusal the provider's own way

    python -m tests.contract sendgrid --port 8025 [--count-only]   # first stdout line: URL
    GET <url>/_contract/stats -> {"requests", "delivered", "max_recipients_per_request"}

Each server checks what the real API checks -- credentials, path and method, size and
count limits, field names and payload shapes -- and answers with the documented success
and error bodies. Substitution happens the provider's way: Mailgun fills %recipient.KEY%
in subject, text, html and h: headers per `to`; SendGrid applies each personalization's
substitutions (plain string replace) to subject, content and headers and lays its headers
over the message's; Postmark delivers each message as given.

Documentation relied on (each provider module lists its pages and the choices made where
the docs are silent):

- Postmark: "Send batch emails" (postmarkapp.com/developer/user-guide/send-email-with-api/
  batch-emails), "Email API" reference (postmarkapp.com/developer/api/email-api), "API
  overview" with HTTP codes and API error codes (postmarkapp.com/developer/api/overview),
  support articles 1180 (ErrorCode 300) and 1056 (size limits).
- Mailgun: API reference "Messages" (documentation.mailgun.com/docs/mailgun/api-reference/
  send/mailgun/messages), user manual "Batch Sending" (.../user-manual/sending-messages/
  batch-sending), "API Response Codes" (.../quickstart-guide/responses).
- SendGrid: "Mail Send API Overview" (twilio.com/docs/sendgrid/api-reference/mail-send),
  "Mail Send Errors" (.../api-reference/mail-send/errors), "Personalizations",
  "Substitution Tags", "Rate Limits" (.../how-to-use-the-sendgrid-v3-api/rate-limits).
"""

from __future__ import annotations

from tests.contract._common import Delivered, RequestRecord
from tests.contract.server import PROVIDERS, STATS_PATH, ContractServer, running, stats_of

__all__ = [
    "PROVIDERS",
    "STATS_PATH",
    "ContractServer",
    "Delivered",
    "RequestRecord",
    "running",
    "stats_of",
]
