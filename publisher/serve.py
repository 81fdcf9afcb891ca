"""`runletter serve`: the other end of every link in a message, and the providers' webhooks.

Framework and server
--------------------
Flask, run by gunicorn (started in-process through gunicorn's ``BaseApplication``; no
``gunicorn`` command line, no config file). Flask rather than Starlette because every handler
here is one short, synchronous SQLite transaction on the stdlib ``sqlite3`` Store: an async
framework would only add a thread-pool hop per request around blocking calls. Flask is mature
and small, has per-request body limits (Flask >= 3.1), Jinja2 is already the project's
template engine, and it has no implicit form handling: CSRF protection is done here,
explicitly. gunicorn runs ``[serve] workers`` processes of its threaded worker (``THREADS``
threads each); every thread opens its own SQLite connection (WAL, 5 s busy timeout) and every
change is one ``BEGIN IMMEDIATE`` transaction, so concurrent requests queue on SQLite's write
lock instead of interleaving.

Endpoints (paths are relative to ``[newsletter] base_url``; put this server behind the same
host as the archive, or proxy these paths to it):

``GET|POST /subscribe``
    Email, first name and goal (from goals.toml). Creates a ``pending`` reader and sends a
    confirmation email through the configured provider (``[delivery] provider``; the outbox
    by default) with a signed link ``/confirm/<token>`` valid for ``[serve] confirm_hours``.
    The page and status are the same whatever the address's state (new, pending, active,
    unsubscribed, bounced, complained): the address is never revealed as subscribed. An
    active reader is left as is and emailed a note with their preferences link instead; a
    pending reader or one who left gets a fresh confirmation (their name and goal are taken
    from the form) but their status does not change until they click it. Re-submitting never
    re-activates anyone. Rate limit: ``[serve] signups_per_hour`` well-formed submissions per
    client IP (IPv6: per /64), sliding window, shared by all workers through SQLite; over it
    the answer is a 429 page with Retry-After.
``GET|POST /confirm/<token>``
    ``GET`` shows a page with one button (mail scanners open links, and must not confirm
    anyone); the button's ``POST`` makes the reader ``active`` and records consent: source
    "signup form", the time and the IP of the click. A confirmation link older than the
    reader's last unsubscribe (or bounce, or complaint) is refused (410): only a new signup
    re-activates a reader who left.
``GET|POST /unsubscribe/<token>``
    ``POST`` (RFC 8058 one-click: body ``List-Unsubscribe=One-Click``, no cookie, no CSRF
    token, the signed token is the authority) unsubscribes at once and answers 200 with a
    short page, never a redirect. ``GET`` only shows a page with one button (mail scanners
    follow GET links); the button POSTs the same body. The ``mailto:`` address of
    List-Unsubscribe is handled by the provider's inbound route (out of scope here).
``GET|POST /preferences/<token>``
    Change first name and goal, pause, resume, unsubscribe, or (after leaving) ask for a new
    confirmation email. A goal change takes effect on the next edition: the reader's
    not-yet-sent ledger rows (planned or failed, never in-flight or sent) are dropped in the
    same transaction, so the next ``runletter publish`` plans them again under the new goal,
    or not at all when the post's audience does not include it.
``GET|POST /embed``
    The signup form for other sites (see "Embedding" below).
``POST /webhooks/<postmark|mailgun|sendgrid|ses>``
    Bounces, complaints and unsubscribes reported by the provider (see "Webhooks").
``GET /style.css``, ``GET /healthz``
    The archive's stylesheet (the author's, else the built-in one), and a liveness probe.

The pause model
---------------
The store's statuses are fixed (pending, active, unsubscribed, bounced, complained) and every
sending path already skips anyone not ``active``, so a pause is not a new status: a paused
reader is ``unsubscribed`` and the audit row of that change has a reason starting with
"paused". The preferences page reads the reader's last audit row: after a pause it offers
"Resume" (back to ``active`` at once, audited "resumed", no new confirmation: the reader is
acting through their own signed link); after an unsubscribe, bounce or complaint it offers
"Subscribe again", which sends a new confirmation. Choosing "Unsubscribe" while paused writes
an audit row unsubscribed → unsubscribed, so the pause can no longer be resumed.

CSRF
----
Forms served by this app (``/subscribe``, ``/preferences/<token>``) use a signed double-submit
token: a random nonce in a cookie (``rl_csrf``: HttpOnly, SameSite=Lax, Secure over HTTPS)
and the same nonce signed with the secret (itsdangerous, salt per app, 4 h max age) in a
hidden field. A POST whose field is missing, forged, expired or does not match the cookie gets
a 400 page and changes nothing. No server-side session is needed. The unsubscribe button is
exempt (its signed token is the authority, and RFC 8058 POSTs carry no cookie).

Embedding
---------
A form on another site cannot carry our CSRF token, so ``POST /embed`` takes no CSRF token:
for it, CSRF protection is replaced by the per-IP rate limit and double opt-in (a forged
cross-site submission can at most cause one confirmation email, which does nothing unless the
mailbox owner clicks it). Either frame the ready-made form (``/embed`` may be framed; every
other page sends ``X-Frame-Options: DENY``)::

    <iframe src="https://news.example.org/embed" title="Subscribe" width="100%" height="420"
            style="border:0"></iframe>

or paste a plain form (the hidden ``website`` field is a honeypot: leave it empty)::

    <form method="post" action="https://news.example.org/embed">
      <label>Email <input type="email" name="email" required></label>
      <label>First name <input name="first_name"></label>
      <select name="goal"><option value="general">Everyone</option>
        <option value="marathon">Marathon</option></select>
      <input name="website" tabindex="-1" autocomplete="off" style="display:none">
      <button>Subscribe</button>
    </form>

Webhooks
--------
Postmark's credentials and SendGrid's signature are checked before the body is parsed;
Mailgun and SNS sign fields inside the body, so theirs is parsed first, and only after its
nesting is measured (at most 32 levels, in linear time, without recursion). Unsigned, badly
signed, stale, replayed or malformed requests (not UTF-8, not JSON, too deep, lone
surrogates, wrong shapes) get a 4xx JSON answer and change nothing.

* Postmark: HTTP Basic auth, user ``[serve] postmark_webhook_user``, password from
  ``RUNLETTER_POSTMARK_WEBHOOK_PASSWORD``. RecordType "Bounce" with Type HardBounce or
  BadEmailAddress → bounced; "SpamComplaint" → complained; "SubscriptionChange" with
  SuppressSending and reason ManualSuppression → unsubscribed.
* Mailgun: ``signature`` {timestamp, token, signature} = HMAC-SHA256(timestamp + token) with
  ``RUNLETTER_MAILGUN_WEBHOOK_SIGNING_KEY``; a timestamp more than 5 minutes off is refused,
  and so is a token seen before (kept in SQLite). ``event-data``: failed with severity
  permanent → bounced; complained → complained; unsubscribed → unsubscribed.
* SendGrid: signed Event Webhook, ECDSA P-256 / SHA-256 over timestamp + raw body, headers
  X-Twilio-Email-Event-Webhook-Signature and -Timestamp, key ``[serve] sendgrid_public_key``
  (base64 DER, as SendGrid shows it, or PEM); a signed timestamp more than 5 minutes off is
  refused (SendGrid documents no window; this is Mailgun's). An array of events: bounce
  (not "blocked") → bounced; dropped → by its reason (bounced address, spam-reporting
  address, unsubscribed address); spamreport → complained; unsubscribe, group_unsubscribe →
  unsubscribed. Events are de-duplicated by sg_event_id (SendGrid retries whole batches).
* Amazon SES through SNS: the SNS signature (SignatureVersion 1 = SHA1withRSA, 2 =
  SHA256withRSA, over the documented key/value lines of the message type) is checked with the
  certificate in the file named by ``[serve] ses_certificate``; ``SigningCertURL`` and
  ``SubscribeURL`` are never fetched. TopicArn must equal ``[serve] ses_topic_arn``. A
  SubscriptionConfirmation is logged with its SubscribeURL for the operator to visit.
  Notification Message: notificationType (or eventType) Bounce with bounceType Permanent →
  each bouncedRecipients[].emailAddress bounced; Complaint → complainedRecipients
  complained. Messages are de-duplicated by MessageId (SNS keeps it on retries).

A status only moves towards the stronger one: active/pending < unsubscribed < bounced <
complained (a complaint is never turned into a bounce). Every change goes through
``Store.set_status`` and so into the audit table. Each event also updates the reader's ledger
row, found by the event's message id against ``deliveries.provider_id`` (angle brackets
ignored; for SendGrid also the X-Message-Id prefix of sg_message_id), else by our own
Message-ID ``<post.reader@domain>``, else the reader's most recent ``sent`` row: ``error``
becomes the event ("bounce (postmark): …"), and a bounce of a ``sent`` row makes it
``rejected`` (it was not delivered); a complaint or unsubscribe leaves the state ``sent``.

State kept by this module
-------------------------
Two small tables in the store's database (store migration 5): ``serve_signups`` (the rate
limit's window) and ``serve_webhook_seen`` (Mailgun tokens, SendGrid event ids, SNS message
ids; pruned after a day, and never before twice a signature window). Keeping them in the
same database puts a replay mark and the change it guards in one transaction.

GET and HEAD change nothing
---------------------------
Only a POST changes a reader. Flask answers HEAD with a route's GET view, so views test for
POST, never for GET. And for every route, present or added later, the request hook turns the
thread's SQLite connection read-only (``PRAGMA query_only``) for GET, HEAD and OPTIONS: a page
that tried to write on a link scanner's visit fails with a 500 and changes nothing.

Security basics
---------------
Jinja autoescape on every page; a strict CSP (``default-src 'none'``, styles from 'self' and a
per-response nonce, ``form-action 'self'``, ``frame-ancestors 'none'`` except on /embed);
X-Content-Type-Options, Referrer-Policy no-referrer (links carry tokens), Cache-Control
no-store; 16 KiB body limit on forms and 2 MiB on webhooks; no stack traces to clients (they
are logged). Behind a reverse proxy set ``RUNLETTER_SERVE_PROXIES`` to the number of proxies
so the client IP (rate limit, consent record) is taken from X-Forwarded-For; without it the
header is ignored, so a client cannot choose its own IP. Access logs are off by default
because paths carry reader tokens.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import secrets
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from .config import Config
from .errors import RunletterError
from .model import EVERYONE, Edition, Goals, Slot, split_slots
from .store import LEFT, MAX_NAME, Store, Subscriber, now, validate_email
from .webhooks import (
    MAILGUN_KEY_ENV,
    MAILGUN_TOLERANCE,
    POSTMARK_PASSWORD_ENV,
    SENDGRID_TOLERANCE,
    Event,
    WebhookError,
    load_sendgrid_key,
    load_ses_certificate,
    mailgun_events,
    postmark_events,
    sendgrid_events,
    ses_events,
)

log = logging.getLogger("runletter.serve")

THREADS = 4                       # gunicorn gthread threads per worker process
FORM_MAX = 16 * 1024              # bytes: any form or one-click POST
WEBHOOK_MAX = 2 * 1024 * 1024     # bytes: a provider's webhook batch
CSRF_COOKIE = "rl_csrf"
CSRF_MAX_AGE = 4 * 3600
# How long webhook ids are remembered: a day, and at least as long as a signed request is
# accepted (its timestamp may be off either way, so twice the window).
SEEN_KEEP = max(24 * 3600, 2 * MAILGUN_TOLERANCE, 2 * SENDGRID_TOLERANCE)
RATE_WINDOW = 3600
PROXIES_ENV = "RUNLETTER_SERVE_PROXIES"
CONSENT_SOURCE = "signup form"
RANK = {"pending": 0, "active": 0, "unsubscribed": 1, "bounced": 2, "complained": 3}
STATUS_FOR = {"bounce": "bounced", "complaint": "complained", "unsubscribe": "unsubscribed"}
NAME_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1 (NEL), LS, PS
# Link scanners fetch with these; Flask runs a GET view for HEAD, so views test for POST.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})



# -- changes to readers and the ledger ------------------------------------------------------


def last_audit(conn: sqlite3.Connection, subscriber_id: int) -> tuple[str, str] | None:
    """(reason, at) of a reader's most recent status change."""
    return conn.execute("SELECT reason, at FROM audit WHERE subscriber_id = ? "
                        "ORDER BY id DESC LIMIT 1", (subscriber_id,)).fetchone()


def is_paused(conn: sqlite3.Connection, reader: Subscriber) -> bool:
    """A paused reader is unsubscribed, and their last audit row says 'paused'."""
    if reader.status != "unsubscribed":
        return False
    last = last_audit(conn, reader.id)
    return last is not None and last[0].startswith("paused")


def confirmation_is_stale(conn: sqlite3.Connection, reader: Subscriber, issued: float) -> bool:
    """True when a confirmation link was issued before the reader last left the list."""
    if reader.status not in LEFT:
        return False
    last = last_audit(conn, reader.id)
    return last is not None and issued < datetime.fromisoformat(last[1]).timestamp()


def reader_by_id(store: Store, subscriber_id: int) -> Subscriber | None:
    """The reader with this id, or None."""
    row = store.conn.execute("SELECT email FROM subscribers WHERE id = ?",
                             (subscriber_id,)).fetchone()
    return store.get(row[0]) if row else None


# Every post in the ledger by index seeks on its primary key (post, subscriber_id), then that
# reader's row of each: O(posts x log rows). Filtering on subscriber_id alone, which no index
# leads with, would scan the whole ledger for every webhook event.
_READER_ROWS = """
WITH RECURSIVE posts(post) AS (
    SELECT MIN(post) FROM deliveries
    UNION ALL
    SELECT (SELECT MIN(post) FROM deliveries WHERE post > posts.post) FROM posts
    WHERE posts.post IS NOT NULL
)
SELECT d.post, d.state, d.provider_id, d.updated_at, d.rowid FROM posts
JOIN deliveries d ON d.post = posts.post AND d.subscriber_id = ?
"""


def _ledger_row(conn: sqlite3.Connection, subscriber_id: int,
                message_ids: tuple[str, ...]) -> tuple[str, str] | None:
    """(post, state) of the ledger row an event is about; see the module docstring."""
    rows = conn.execute(_READER_ROWS, (subscriber_id,)).fetchall()
    if not rows:
        return None
    newest_first = sorted(rows, key=lambda r: (r[3], r[4]), reverse=True)
    clean = {m.strip().strip("<>") for m in message_ids if m and m.strip("<> ")}
    for post, state, provider_id, _, _ in newest_first:
        if provider_id and provider_id.strip().strip("<>") in clean:
            return post, state
    for candidate in clean:  # our own Message-ID: <post.reader@domain>
        match = re.match(r"^(.+)\.(\d+)@[^@]+$", candidate)
        if match and int(match.group(2)) == subscriber_id:
            for post, state, *_ in rows:
                if post == match.group(1):
                    return post, state
    return next(((post, state) for post, state, *_ in newest_first if state == "sent"), None)


def apply_events(store: Store, provider: str, events: list[Event]) -> int:
    """Apply events in the caller's transaction; return how many readers changed status."""
    changed = 0
    conn = store.conn
    for event in events:
        reader = store.get(event.email)
        if reader is None:
            log.info("%s webhook: %s for an address not on the list", provider, event.kind)
            continue
        target = STATUS_FOR[event.kind]
        if RANK[target] > RANK[reader.status]:
            store.set_status(reader.id, target,
                             f"{provider} webhook: {event.kind}: {event.detail}"[:300])
            changed += 1
        row = _ledger_row(conn, reader.id, event.message_ids)
        if row is not None:
            post, state = row
            new_state = "rejected" if event.kind == "bounce" and state == "sent" else state
            conn.execute("UPDATE deliveries SET state = ?, error = ?, updated_at = ? "
                         "WHERE post = ? AND subscriber_id = ?",
                         (new_state, f"{event.kind} ({provider}): {event.detail}"[:500], now(),
                          post, reader.id))
    return changed


def mark_seen(conn: sqlite3.Connection, provider: str, token: str) -> bool:
    """Remember a webhook id; False when it was already there (a replay or a retry)."""
    stamp = time.time()
    conn.execute("DELETE FROM serve_webhook_seen WHERE at < ?", (stamp - SEEN_KEEP,))
    try:
        conn.execute("INSERT INTO serve_webhook_seen(provider, token, at) VALUES (?, ?, ?)",
                     (provider, token, stamp))
    except sqlite3.IntegrityError:
        return False
    return True


def ip_bucket(addr: str | None) -> str:
    """The rate-limit key for a client: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return addr or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def take_signup_slot(store: Store, bucket: str, per_hour: int) -> bool:
    """Count one signup for this client; False when the hour's allowance is used up."""
    stamp = time.time()
    with store.transaction() as conn:
        conn.execute("DELETE FROM serve_signups WHERE at < ?", (stamp - RATE_WINDOW,))
        used = conn.execute("SELECT COUNT(*) FROM serve_signups WHERE ip = ?",
                            (bucket,)).fetchone()[0]
        if used >= per_hour:
            return False
        conn.execute("INSERT INTO serve_signups(ip, at) VALUES (?, ?)", (bucket, stamp))
    return True


def name_problem(name: str) -> str | None:
    """Why a first name cannot be stored, or None."""
    if NAME_BAD.search(name):
        return "Your first name can't contain line breaks or control characters."
    if len(name) > MAX_NAME:
        return f"Your first name can be at most {MAX_NAME} characters."
    return None


# -- confirmation emails ----------------------------------------------------------------------


class Mailer:
    """Sends the confirmation (and 'already subscribed') emails through the configured provider.

    Each kind of email is an Edition rendered once at start-up with two slots, the reader's
    first name and their link, and compiled once; per signup only the slots are filled.
    """

    KINDS = ("confirm", "already")

    def __init__(self, config: Config, signer, env):
        from .address import Addresser
        from .providers import provider_class
        from .providers.base import provider_settings

        self.config = config
        self.cls = provider_class(config.delivery.provider)
        self.settings = provider_settings(self.cls, config)
        self.addresser = Addresser(config, signer)
        self.hours = config.serve.confirm_hours
        self.compiled = {kind: self.addresser.compile(self._edition(kind, env))
                         for kind in self.KINDS}

    def _edition(self, kind: str, env) -> Edition:
        slots = (Slot("first_name", "runner"), Slot("link"))
        marks = {"first_name": "ZZSLOT0ZZ", "link": "ZZSLOT1ZZ"}
        name = self.config.name
        if kind == "confirm":
            subject = f"Confirm your subscription to {name}"
            preheader = "One click and you're in."
            text = (f"Hi {marks['first_name']},\n\nPlease confirm that you want {name} in "
                    f"your inbox:\n\n{marks['link']}\n\nThe link works for {self.hours} hours. "
                    "If you didn't ask for this, ignore this email: you won't hear from us "
                    "again.\n")
        else:
            subject = f"You're already subscribed to {name}"
            preheader = "Nothing to do, unless you want to change something."
            text = (f"Hi {marks['first_name']},\n\nSomeone (probably you) asked to subscribe "
                    f"this address to {name}, and it already is. Nothing has changed.\n\n"
                    f"Change your goal or name, pause or unsubscribe here:\n\n{marks['link']}\n")
        text += f"\n-- \n{name}\n{self.config.postal_address}\n"
        html = env.get_template("serve/email.html.j2").render(
            kind=kind, newsletter=self.config, subject=subject, preheader=preheader,
            first_name=marks["first_name"], link=marks["link"], hours=self.hours)
        return Edition(post_slug="runletter-serve", goal=kind, subject=subject,
                       preheader=preheader, html_parts=split_slots(html, slots),
                       text_parts=split_slots(text, slots))

    def send(self, kind: str, reader: Subscriber, link: str) -> str:
        """Send one email; return the receipt's status (accepted, rejected or failed)."""
        from .address import Recipient
        from .providers.base import Batch

        values = self.addresser.values_for("runletter-serve", reader.id, reader.email,
                                           reader.first_name)
        values["link"] = link
        values["message_id"] = (f"<{kind}.{reader.id}.{uuid.uuid4().hex[:12]}"
                                f"@{self.addresser.domain}>")
        recipient = Recipient(reader.id, reader.email, reader.first_name, values)
        compiled = self.compiled[kind]
        with self.cls(self.config, self.addresser, self.settings) as provider:
            [receipt] = provider.send(Batch(compiled.edition, compiled, (recipient,)))
        if receipt.status != "accepted":
            log.warning("%s email to reader #%s not sent: %s %s", kind, reader.id,
                        receipt.status, receipt.reason)
        return receipt.status


# -- the application --------------------------------------------------------------------------


class Connections:
    """Per-thread Store connections (opened lazily, and again after a fork)."""

    def __init__(self, path: Path):
        self.path = path
        self.local = threading.local()

    def store(self) -> Store:
        """This thread's Store."""
        local = self.local
        if getattr(local, "store", None) is None or local.pid != os.getpid():
            local.store = Store.open(self.path)
            local.pid = os.getpid()
        return local.store

    def read_only(self, on: bool) -> None:
        """Make SQLite refuse every write on this thread's connection while `on`."""
        self.store().conn.execute(f"PRAGMA query_only = {1 if on else 0}")


def create_app(config: Config, goals: Goals, secret: str):
    """The Flask app for one newsletter (used by serve_command, and by tests in-process)."""
    from flask import Flask, g, jsonify, redirect, request
    from itsdangerous import BadSignature, URLSafeTimedSerializer
    from werkzeug.exceptions import HTTPException

    from .render import layout_environment
    from .tokens import Signer

    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[runletter serve] %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    signer = Signer(secret)
    serve = config.serve
    env = layout_environment(config, "web")
    env.globals["csrf_field"] = "csrf"
    for name in ("subscribe", "embed", "message", "confirm", "unsubscribe", "preferences",
                 "email"):
        env.get_template(f"serve/{name}.html.j2")  # a broken layout fails at start-up
    mailer = Mailer(config, signer, env)
    readers = Connections(config.store_path)
    Store.open(config.store_path).close()  # create or migrate the store before workers start
    sendgrid_key = (load_sendgrid_key(serve.sendgrid_public_key)
                    if serve.sendgrid_public_key else None)
    ses_cert = (load_ses_certificate(config.root / serve.ses_certificate)
                if serve.ses_certificate else None)
    csrf = URLSafeTimedSerializer(secret, salt="runletter.serve.csrf")
    confirm_ttl = serve.confirm_hours * 3600
    per_hour = serve.signups_per_hour
    goal_slugs = goals.slugs

    app = Flask("runletter.serve")
    app.config.update(MAX_CONTENT_LENGTH=FORM_MAX, MAX_FORM_MEMORY_SIZE=FORM_MAX,
                      MAX_FORM_PARTS=50, PROPAGATE_EXCEPTIONS=False, TRAP_HTTP_EXCEPTIONS=False)
    proxies = int(os.environ.get(PROXIES_ENV, "0") or 0)
    if proxies > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore

    # -- helpers -------------------------------------------------------------------------

    def url(path: str) -> str:
        return "/style.css" if path == "style.css" else config.archive_url(path)

    def render(template: str, status: int = 200, title: str = "", **context: Any):
        if "csp_nonce" not in g:
            g.csp_nonce = secrets.token_urlsafe(16)
        html = env.get_template(f"serve/{template}.html.j2").render(
            newsletter=config, goals=goals, root="/", url=url, csp_nonce=g.csp_nonce,
            confirm_hours=serve.confirm_hours,
            title=f"{title} · {config.name}" if title else config.name, **context)
        return app.response_class(html, status=status, mimetype="text/html")

    def message(status: int, title: str, heading: str, *paragraphs: str,
                link: tuple[str, str] | None = None):
        return render("message", status, title=title, heading=heading, paragraphs=paragraphs,
                      link=link)

    def with_csrf(template: str, status: int = 200, **context: Any):
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if not re.fullmatch(r"[A-Za-z0-9_-]{32}", nonce):
            nonce = secrets.token_urlsafe(24)
        response = render(template, status, csrf_token=csrf.dumps(nonce), **context)
        response.set_cookie(CSRF_COOKIE, nonce, max_age=CSRF_MAX_AGE, httponly=True,
                            samesite="Lax", secure=request.is_secure, path="/")
        return response

    def csrf_ok() -> bool:
        cookie = request.cookies.get(CSRF_COOKIE)
        field = request.form.get("csrf")
        if not cookie or not field:
            return False
        try:
            nonce = csrf.loads(field, max_age=CSRF_MAX_AGE)
        except BadSignature:
            return False
        return isinstance(nonce, str) and hmac.compare_digest(nonce, cookie)

    def csrf_refused():
        return message(400, "Form expired", "This form has expired",
                       "For your safety, forms only work for a few hours and only from this "
                       "site. Please go back, reload the page and try again.")

    def address_of(subscriber_id: int) -> str | None:
        reader = reader_by_id(readers.store(), subscriber_id)
        return reader.email if reader else None

    def token_refused(purpose: str, token: str):
        if len(token) <= 200 and signer.is_expired(purpose, token, bind=address_of):
            return message(410, "Link expired", "This link has expired",
                           "Links in our emails only work for a while. "
                           + ("Sign up again and we'll send you a fresh one."
                              if purpose == "confirm" else "Use the link in a newer email."),
                           link=("/subscribe", "Sign up again") if purpose == "confirm"
                           else None)
        return message(400, "Link not valid", "This link isn't valid",
                       "It may have been cut off or changed when it was copied. Open it "
                       "straight from the email, or copy the whole address.")

    def verified(purpose: str, token: str) -> tuple[Subscriber | None, Any]:
        found: dict[int, Subscriber | None] = {}

        def bind(subscriber_id: int) -> str | None:
            found[subscriber_id] = reader_by_id(readers.store(), subscriber_id)
            return found[subscriber_id].email if found[subscriber_id] else ""

        data = signer.verify(purpose, token, bind=bind) if len(token) <= 200 else None
        if data is None:
            if found and all(r is None for r in found.values()):
                return None, message(410, "Link no longer works", "This link no longer works",
                                     "We don't have this subscription any more, so there is "
                                     "nothing to change.")
            return None, token_refused(purpose, token)
        return found[data.subscriber_id], data

    def client_ip() -> str:
        return request.remote_addr or "unknown"

    def link_for(purpose: str, reader: Subscriber) -> str:
        ttl = confirm_ttl if purpose == "confirm" else None
        return config.archive_url(
            f"{purpose}/{signer.sign(purpose, reader.id, ttl, bind=reader.email)}")

    def send_confirmation(reader: Subscriber, kind: str = "confirm"):
        """Send and return None, or return the page to show when sending failed."""
        link = link_for("confirm" if kind == "confirm" else "preferences", reader)
        try:
            status = mailer.send(kind, reader, link)
        except Exception:  # noqa: BLE001 - a provider outage must not show a trace
            log.exception("sending the %s email failed", kind)
            status = "failed"
        if status == "failed":
            return message(503, "Try again later", "We couldn't send the email just now",
                           "Please try again in a few minutes.")
        return None

    # -- request hooks ---------------------------------------------------------------------

    @app.before_request
    def before():
        g.csp_nonce = secrets.token_urlsafe(16)
        if request.path.startswith("/webhooks/"):
            request.max_content_length = WEBHOOK_MAX
        # Structural, for every route now and later: a GET or HEAD that tried to write would
        # fail loudly instead of letting a link scanner change a reader.
        readers.read_only(request.method in SAFE_METHODS)

    @app.after_request
    def headers(response):
        embed = request.path == "/embed"
        h = response.headers
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "no-referrer"
        nonce = g.get("csp_nonce", "none")
        ancestors = "*" if embed else "'none'"
        h["Content-Security-Policy"] = (
            f"default-src 'none'; style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; "
            f"form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}")
        if not embed:
            h["X-Frame-Options"] = "DENY"
            h["Cross-Origin-Opener-Policy"] = "same-origin"
        h.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith("/webhooks/"):
            return jsonify(error=exc.name), exc.code
        text = {404: "There is no page here.", 405: "This page doesn't take that kind of "
                "request.", 413: "That was more data than this page accepts."}
        return message(exc.code or 500, exc.name, exc.name,
                       text.get(exc.code or 0, "Something about the request was wrong."))

    @app.errorhandler(RunletterError)
    def runletter_error(exc: RunletterError):
        log.error("%s", exc)
        if request.path.startswith("/webhooks/"):
            return jsonify(error="temporarily unavailable"), 503
        return message(503, "Try again later", "Please try again in a moment",
                       "We couldn't complete that just now.")

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        if request.path.startswith("/webhooks/"):
            return jsonify(error="internal error"), 500
        return message(500, "Something went wrong", "Something went wrong on our side",
                       "Nothing was changed. Please try again later.")

    # -- pages -----------------------------------------------------------------------------

    @app.get("/healthz")
    def healthz():
        return app.response_class("ok\n", mimetype="text/plain")

    @app.get("/style.css")
    def style():
        source = env.loader.get_source(env, "style.css")[0]  # type: ignore[union-attr]
        response = app.response_class(source, mimetype="text/css")
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    @app.get("/favicon.ico")
    def favicon():
        return app.response_class(status=204)

    @app.get("/")
    def home():
        return redirect("/subscribe", code=302)

    def form_values() -> dict[str, str]:
        goal = request.values.get("goal", "").strip().lower() or EVERYONE
        return {"email": request.values.get("email", "").strip()[:320],
                "first_name": request.values.get("first_name", "").strip()[:MAX_NAME + 20],
                "goal": goal if goal in goal_slugs else EVERYONE}

    def signup(template: str, checked_csrf: bool):
        form = form_values()
        show = with_csrf if checked_csrf else render
        if request.form.get("website"):  # the honeypot: a bot filled every field
            log.info("signup honeypot filled from %s; ignored", client_ip())
            return show(template, title="Check your inbox", form=form, errors=(), done=True)
        errors = []
        if reason := validate_email(request.form.get("email", "")):
            errors.append(f"That email address doesn't look right: {reason}.")
        if problem := name_problem(form["first_name"]):
            errors.append(problem)
        goal = request.form.get("goal", "").strip().lower() or EVERYONE
        if goal not in goal_slugs:
            errors.append("Please pick one of the goals in the list.")
        if errors:
            return show(template, 400, title="Subscribe", form=form, errors=errors, done=False)
        store = readers.store()
        if not take_signup_slot(store, ip_bucket(client_ip()), per_hour):
            response = message(429, "Too many signups", "Too many signups from here",
                               "Please try again in an hour.")
            response.headers["Retry-After"] = str(RATE_WINDOW)
            return response
        with store.transaction():
            reader = store.get(form["email"])
            if reader is None:
                reader = store.add(form["email"], goal=goal, first_name=form["first_name"],
                                   status="pending", consent_source="signup form, unconfirmed",
                                   consent_ip=client_ip())
                kind = "confirm"
            elif reader.status == "active":
                kind = "already"  # an active reader's data only changes via their own link
            else:
                reader = store.update(reader.email, goal=goal, first_name=form["first_name"])
                kind = "confirm"
        failed = send_confirmation(reader, kind)
        if failed is not None:
            return failed
        return show(template, title="Check your inbox", form=form, errors=(), done=True)

    @app.route("/subscribe", methods=["GET", "POST"])
    def subscribe():
        if request.method != "POST":
            return with_csrf("subscribe", title="Subscribe", form=form_values(), errors=(),
                             done=False)
        if not csrf_ok():
            return csrf_refused()
        return signup("subscribe", checked_csrf=True)

    @app.route("/embed", methods=["GET", "POST"])
    def embed():
        if request.method != "POST":
            return render("embed", title="Subscribe", form=form_values(), errors=(),
                          done=False)
        return signup("embed", checked_csrf=False)

    def stale_confirmation():
        return message(410, "Link expired", "This link is older than your unsubscribe",
                       "To come back, sign up again and we'll send you a fresh confirmation "
                       "link.", link=("/subscribe", "Sign up again"))

    def confirmed(reader: Subscriber, heading: str):
        goal = goals.get(reader.goal)
        return message(200, "Subscription confirmed", heading,
                       f"Thanks{', ' + reader.first_name if reader.first_name else ''}: "
                       f"{config.name} will reach you with the "
                       f"{goal.label if goal else reader.goal} edition.",
                       "You can change your goal or name, pause or unsubscribe at any time.",
                       link=(link_for("preferences", reader), "Your preferences"))

    @app.route("/confirm/<token>", methods=["GET", "POST"])
    def confirm(token: str):
        reader, data = verified("confirm", token)
        if reader is None:
            return data
        issued = data.expires - confirm_ttl
        store = readers.store()
        if request.method != "POST":  # mail scanners open links: the page only offers a button
            if confirmation_is_stale(store.conn, reader, issued):
                return stale_confirmation()
            if reader.status == "active":
                return confirmed(reader, "You're already confirmed")
            goal = goals.get(reader.goal)
            return render("confirm", title="Confirm your subscription", reader=reader,
                          goal=goal.label if goal else "")
        with store.transaction() as conn:
            reader = reader_by_id(store, reader.id)
            assert reader is not None
            if confirmation_is_stale(conn, reader, issued):
                return stale_confirmation()
            if reader.status != "active":
                reason = ("confirmed signup (double opt-in)" if reader.status == "pending"
                          else f"re-subscribed: confirmed by email link after {reader.status}")
                store.set_status(reader.id, "active", reason)
                conn.execute("UPDATE subscribers SET consent_source = ?, consent_at = ?, "
                             "consent_ip = ?, updated_at = ? WHERE id = ?",
                             (CONSENT_SOURCE, now(), client_ip(), now(), reader.id))
                heading = "You're in!"
            else:
                heading = "You're already confirmed"
        return confirmed(reader, heading)

    @app.route("/unsubscribe/<token>", methods=["GET", "POST"])
    def unsubscribe(token: str):
        reader, data = verified("unsubscribe", token)
        if reader is None:
            return data
        if request.method != "POST":
            return render("unsubscribe", title="Unsubscribe", reader=reader,
                          left=reader.status in LEFT, done=False)
        store = readers.store()
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
        with store.transaction():
            current = reader_by_id(store, reader.id)
            if current is not None and current.status in ("active", "pending"):
                store.set_status(current.id, "unsubscribed",
                                 "one-click unsubscribe (RFC 8058)" if one_click
                                 else "unsubscribe link")
        return render("unsubscribe", title="Unsubscribed", reader=reader, left=True, done=True)

    @app.route("/preferences/<token>", methods=["GET", "POST"])
    def preferences(token: str):
        reader, data = verified("preferences", token)
        if reader is None:
            return data
        store = readers.store()
        conn = store.conn
        if request.method != "POST":
            done = request.args.get("done", "")
            return with_csrf("preferences", title="Your preferences", reader=reader,
                             paused=is_paused(conn, reader), errors=(),
                             form={"first_name": reader.first_name, "goal": reader.goal},
                             done=done if done in DONE_TEXT else "", done_text=DONE_TEXT)
        if not csrf_ok():
            return csrf_refused()
        action = request.form.get("action", "save")
        if action == "save":
            first_name = request.form.get("first_name", "").strip()
            goal = request.form.get("goal", "").strip().lower()
            errors = [p for p in (name_problem(first_name),) if p]
            if goal not in goal_slugs:
                errors.append("Please pick one of the goals in the list.")
            if errors:
                return with_csrf("preferences", 400, title="Your preferences", reader=reader,
                                 paused=is_paused(conn, reader), errors=errors,
                                 form={"first_name": first_name[:MAX_NAME + 20], "goal": goal},
                                 done="", done_text=DONE_TEXT)
            with store.transaction():
                current = reader_by_id(store, reader.id)
                assert current is not None
                store.update(current.email, goal=goal, first_name=first_name)
                if goal != current.goal:
                    # Not yet sent rows go; the next publish plans them under the new goal.
                    conn.execute("DELETE FROM deliveries WHERE subscriber_id = ? AND "
                                 "state IN ('planned', 'failed')", (current.id,))
            done = "saved"
        elif action in ("pause", "resume", "unsubscribe"):
            with store.transaction():
                current = reader_by_id(store, reader.id)
                assert current is not None
                paused = is_paused(conn, current)
                done = ""
                if action == "pause" and current.status in ("active", "pending"):
                    store.set_status(current.id, "unsubscribed", "paused (preferences page)")
                    done = "paused"
                elif action == "resume" and paused:
                    store.set_status(current.id, "active", "resumed (preferences page)")
                    done = "resumed"
                elif action == "unsubscribe" and (current.status in ("active", "pending")
                                                  or paused):
                    if paused:  # the status stays; the audit row ends the pause for good
                        conn.execute("INSERT INTO audit(subscriber_id, email, old_status, "
                                     "new_status, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
                                     (current.id, current.email, "unsubscribed",
                                      "unsubscribed", "unsubscribed (preferences page)", now()))
                    else:
                        store.set_status(current.id, "unsubscribed",
                                         "unsubscribed (preferences page)")
                    done = "unsubscribed"
        elif action == "resubscribe":
            current = reader_by_id(store, reader.id)
            if current is None or current.status not in LEFT or is_paused(conn, current):
                return redirect(request.path, code=303)
            failed = send_confirmation(current)
            if failed is not None:
                return failed
            return message(200, "Check your inbox", "Check your inbox",
                           f"We've sent a confirmation link to {current.email}. Click it "
                           f"within {serve.confirm_hours} hours to start receiving "
                           f"{config.name} again.")
        else:
            return message(400, "Unknown action", "That button isn't one we know",
                           "Please go back and try again.")
        return redirect(f"{request.path}?done={done}" if done else request.path, code=303)

    # -- webhooks --------------------------------------------------------------------------

    def webhook_refused(provider: str, exc: WebhookError):
        log.warning("%s webhook refused (%s): %s", provider, exc.status, exc.message)
        return jsonify(error=exc.message), exc.status

    @app.post("/webhooks/<provider>")
    def webhook(provider: str):
        if provider not in ("postmark", "mailgun", "sendgrid", "ses"):
            return jsonify(error=f"no webhook for '{provider[:40]}'"), 404
        body = request.get_data(cache=False)
        store = readers.store()
        try:
            if provider == "postmark":
                events = postmark_events(request.headers.get("Authorization"), body,
                                         serve.postmark_webhook_user,
                                         os.environ.get(POSTMARK_PASSWORD_ENV))
                with store.transaction():
                    changed = apply_events(store, provider, events)
            elif provider == "mailgun":
                token, events = mailgun_events(body, os.environ.get(MAILGUN_KEY_ENV))
                with store.transaction() as conn:
                    if not mark_seen(conn, provider, token):
                        raise WebhookError(409, "replayed token")
                    changed = apply_events(store, provider, events)
            elif provider == "sendgrid":
                events = sendgrid_events(
                    request.headers.get("X-Twilio-Email-Event-Webhook-Signature"),
                    request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp"), body,
                    sendgrid_key)
                with store.transaction() as conn:
                    fresh = [e for e in events
                             if e.event_id is None or mark_seen(conn, provider, e.event_id)]
                    changed = apply_events(store, provider, fresh)
            else:
                sns, events = ses_events(body, ses_cert, serve.ses_topic_arn,
                                         request.headers.get("x-amz-sns-message-type"))
                if sns["Type"] == "SubscriptionConfirmation":
                    log.warning("SNS subscription confirmation for %s: visit this URL once "
                                "to confirm it (runletter never fetches it): %s",
                                sns.get("TopicArn"), sns.get("SubscribeURL"))
                    return jsonify(ok=True, changed=0, note="subscription confirmation logged")
                if sns["Type"] == "UnsubscribeConfirmation":
                    log.warning("SNS unsubscribe confirmation for %s", sns.get("TopicArn"))
                    return jsonify(ok=True, changed=0)
                with store.transaction() as conn:
                    if not mark_seen(conn, provider, str(sns.get("MessageId"))):
                        return jsonify(ok=True, changed=0, note="duplicate message")
                    changed = apply_events(store, provider, events)
        except WebhookError as exc:
            return webhook_refused(provider, exc)
        return jsonify(ok=True, changed=changed)

    app.extensions["runletter"] = {"config": config, "signer": signer, "mailer": mailer,
                                   "readers": readers}
    return app


DONE_TEXT = {
    "saved": "Saved. Your next email will follow these preferences.",
    "paused": "Paused. You won't get any emails until you resume.",
    "resumed": "Welcome back: you'll get the next edition.",
    "unsubscribed": "You're unsubscribed. We won't email you again.",
}


# -- the server -------------------------------------------------------------------------------


def gunicorn_options(host: str, port: int, workers: int) -> dict[str, Any]:
    """gunicorn settings: threaded workers, no access log (paths carry tokens)."""
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": THREADS,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "runletter-serve",
        "limit_request_line": 4094,
        "limit_request_fields": 60,
        "control_socket_disable": True,  # gunicorn >= 25 only; skipped where unknown
    }


def run_server(app, options: Mapping[str, Any]) -> None:
    """Run the app under gunicorn until SIGINT/SIGTERM."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings and value is not None:
                    self.cfg.set(key, value)

        def load(self):
            return app

    Server().run()


def prepare(host: str | None, port: int | None, workers: int | None,
            start: Path | None = None) -> tuple[Any, dict[str, Any], Callable[[], None]]:
    """Load the project and build the app; return it, gunicorn's options and a banner."""
    from .project import open_project
    from .providers import provider_class
    from .providers.base import unknown_env_settings
    from .tokens import SECRET_ENV, load_secret

    project = open_project(start or Path.cwd())
    config = project.config
    cls = provider_class(config.delivery.provider)
    for warning in unknown_env_settings(cls):
        click.echo(f"warning: {warning}", err=True)
    if cls.needs_secret_env and not os.environ.get(SECRET_ENV):
        raise RunletterError(f"{SECRET_ENV} is not set: with the '{cls.name}' provider, reader "
                             "links must be signed with the same secret 'runletter publish' "
                             "uses; set it in the environment")
    secret, told = load_secret(config.root, create=True)
    if told:
        click.echo(f"note: {told}", err=True)
    assert secret is not None
    app = create_app(config, project.goals, secret)
    host = host or config.serve.host
    port = port if port is not None else config.serve.port
    workers = workers or config.serve.workers
    if workers < 1 or not 0 < port < 65536:
        raise RunletterError("serve: workers must be at least 1 and port between 1 and 65535")

    def banner() -> None:
        click.echo(f"runletter serve: http://{host}:{port} ({workers} workers x {THREADS} "
                   f"threads, provider {cls.name}); links point at {config.base_url}",
                   err=True)

    return app, gunicorn_options(host, port, workers), banner


@click.command("serve")
@click.option("--host", help="Address to listen on (default: [serve] host, 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default: [serve] port, 8000).")
@click.option("--workers", type=int, help="Worker processes (default: [serve] workers).")
def serve_command(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve signup, confirm, unsubscribe, preferences and provider webhooks."""
    app, options, banner = prepare(host, port, workers)
    banner()
    run_server(app, options)


def main(argv: list[str] | None = None) -> None:
    """`python -m publisher.serve`: the command, with errors printed the CLI's way."""
    try:
        serve_command.main(args=argv, prog_name="runletter serve", standalone_mode=False)
    except RunletterError as exc:
        for finding in exc.findings:
            click.echo(f"{finding}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
