"""Pages and links: rendering with the archive's look, the reader's signed links, the pages
that say no, and the confirmation email sent from a page."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from flask import Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from publisher.errors import RunletterError
from publisher.serve.context import app_state
from publisher.serve.db import get_store
from publisher.serve.security import WEBHOOKS, issue_csrf, set_csrf_cookie
from publisher.store import Subscriber
from publisher.store.mailboxes import merged_reader

log = logging.getLogger("runletter.serve")
# Characters; longer is no token of ours. A ready link carries its step's key, so room for
# a long "<sequence>/<step>" (about 280 characters of key), and still cheap to check.
TOKEN_MAX = 400


def render(template: str, status: int = 200, title: str = "", **context: Any):
    """A page from layouts/web/serve/, with the newsletter's look and the CSP nonce."""
    config = app_state().config
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    html = app_state().env.get_template(f"serve/{template}.html.j2").render(
        newsletter=config, goals=app_state().goals, root="/", url=_url, csp_nonce=g.csp_nonce,
        confirm_hours=config.serve.confirm_hours,
        title=f"{title} · {config.name}" if title else config.name, **context)
    return current_app.response_class(html, status=status, mimetype="text/html")


def _url(path: str) -> str:
    return "/style.css" if path == "style.css" else app_state().config.archive_url(path)


def message(status: int, title: str, heading: str, *paragraphs: str,
            link: tuple[str, str] | None = None):
    """A page with a heading, a few paragraphs and at most one link."""
    return render("message", status, title=title, heading=heading, paragraphs=paragraphs,
                  link=link)


def with_csrf(template: str, status: int = 200, **context: Any):
    """A page with a form: its CSRF token in the field, its nonce in the cookie."""
    nonce, token = issue_csrf()
    return set_csrf_cookie(render(template, status, csrf_token=token, **context), nonce)


def csrf_refused():
    """The page for a form whose CSRF token is missing, forged or expired."""
    return message(400, "Form expired", "This form has expired",
                   "For your safety, forms only work for a few hours and only from this "
                   "site. Please go back, reload the page and try again.")


# -- the reader's signed links ----------------------------------------------------------------


def link_for(purpose: str, reader: Subscriber, item: str = "") -> str:
    """A signed link to one of the reader's pages (confirm links expire); `item` is signed
    into it (a confirm link's proposal)."""
    ttl = app_state().confirm_ttl if purpose == "confirm" else None
    signed = app_state().signer.sign(purpose, reader.id, ttl, bind=reader.email, item=item)
    return app_state().config.archive_url(f"{purpose}/{signed}")


def verified(purpose: str, token: str) -> tuple[Subscriber | None, Any]:
    """(the reader, the token's data) for a good link; (None, the page to show) otherwise.

    Every link that fails verification gets one page, whatever its id: a forged link for a
    reader on the list and one for an id nobody has must look alike, or the signup form and
    this page together would tell a stranger who is subscribed. Either way the id is looked
    up once and one MAC is computed, so the time taken tells nothing either."""
    found: dict[int, Subscriber | None] = {}

    def bind(subscriber_id: int) -> str | None:
        store = get_store()
        found[subscriber_id] = store.by_id(subscriber_id)
        if found[subscriber_id] is None and (merged := merged_reader(store.conn, subscriber_id)):
            # A link sent to a spelling merged away: it acts on the reader it became.
            found[subscriber_id] = store.by_id(merged[0])
            return merged[1] if found[subscriber_id] else ""
        return found[subscriber_id].email if found[subscriber_id] else ""

    # now=0: expiry is judged below, so a genuine old link gets the kinder page.
    data = (app_state().signer.verify(purpose, token, now=0, bind=bind)
            if len(token) <= TOKEN_MAX else None)
    reader = found.get(data.subscriber_id) if data is not None else None
    if data is None or reader is None:
        return None, token_refused()
    if data.expires and time.time() > data.expires:
        return None, _expired(purpose)
    return reader, data


def _expired(purpose: str):
    return message(410, "Link expired", "This link has expired",
                   "Links in our emails only work for a while. "
                   + ("Sign up again and we'll send you a fresh one."
                      if purpose == "confirm" else "Use the link in a newer email."),
                   link=("/subscribe", "Sign up again") if purpose == "confirm" else None)


def token_refused():
    """The one page for every link that is not genuine: forged, cut off, made up, for
    another page, or of a reader who is not on the list."""
    return message(400, "Link not valid", "This link isn't valid",
                   "It may have been cut off or changed when it was copied. Open it "
                   "straight from the email, or copy the whole address.")


def send_confirmation(reader: Subscriber, kind: str = "confirm", proposal: str = ""):
    """Send the confirmation (or 'already subscribed') email and return None, or return
    the page to show when it could not be sent; a confirm link names its `proposal`."""
    link = (link_for("confirm", reader, proposal) if kind == "confirm"
            else link_for("preferences", reader))
    try:
        status = app_state().mailer.send(kind, reader, link)
    except Exception:  # noqa: BLE001 - a provider outage must not show a trace
        log.exception("sending the %s email failed", kind)
        status = "failed"
    if status == "failed":
        return message(503, "Try again later", "We couldn't send the email just now",
                       "Please try again in a few minutes.")
    return None


# -- errors: a page for readers, JSON for providers; never a trace ---------------------------


_HTTP_TEXT = {404: "There is no page here.", 405: "This page doesn't take that kind of "
              "request.", 413: "That was more data than this page accepts."}


def http_error(exc: HTTPException):
    """Not found, wrong method, too large…"""
    if request.path.startswith(WEBHOOKS):
        return jsonify(error=exc.name), exc.code
    return message(exc.code or 500, exc.name, exc.name,
                   _HTTP_TEXT.get(exc.code or 0, "Something about the request was wrong."))


def runletter_error(exc: RunletterError):
    """The store is locked or a provider is misconfigured: try again later."""
    log.error("%s", exc)
    if request.path.startswith(WEBHOOKS):
        return jsonify(error="temporarily unavailable"), 503
    return message(503, "Try again later", "Please try again in a moment",
                   "We couldn't complete that just now.")


def server_error(exc: Exception):
    """A bug: logged with its trace, answered without it."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    if request.path.startswith(WEBHOOKS):
        return jsonify(error="internal error"), 500
    return message(500, "Something went wrong", "Something went wrong on our side",
                   "Nothing was changed. Please try again later.")


def init_app(app: Flask) -> None:
    """Install the error pages."""
    app.config.update(PROPAGATE_EXCEPTIONS=False, TRAP_HTTP_EXCEPTIONS=False)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(RunletterError, runletter_error)
    app.register_error_handler(Exception, server_error)
