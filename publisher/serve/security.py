"""CSRF tokens, security headers, the signup rate limits (per client, and emails per
address) and the client's IP.

CSRF: a signed double-submit token. A random nonce sits in a cookie (HttpOnly, SameSite=Lax,
Secure over HTTPS) and the same nonce, signed with the secret (4 h max age), in the form's
hidden field; no server-side session is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import time

from flask import Flask, Response, g, request
from itsdangerous import BadSignature
from werkzeug.middleware.proxy_fix import ProxyFix

from publisher.serve.context import app_state
from publisher.serve.db import get_store

CSRF_COOKIE = "rl_csrf"
CSRF_FIELD = "csrf"
CSRF_MAX_AGE = 4 * 3600
RATE_WINDOW = 3600
PROXIES_ENV = "RUNLETTER_SERVE_PROXIES"
FORM_MAX = 16 * 1024              # bytes: any form or one-click POST
WEBHOOK_MAX = 2 * 1024 * 1024     # bytes: a provider's webhook batch
WEBHOOKS = "/webhooks/"
EMBED = "/embed"  # the one page other sites may frame


# -- CSRF -----------------------------------------------------------------------------------


def issue_csrf() -> tuple[str, str]:
    """(the nonce for the cookie, the signed token for the form); a browser keeps its nonce."""
    nonce = request.cookies.get(CSRF_COOKIE, "")
    if not re.fullmatch(r"[A-Za-z0-9_-]{32}", nonce):
        nonce = secrets.token_urlsafe(24)
    return nonce, app_state().csrf.dumps(nonce)


def set_csrf_cookie(response: Response, nonce: str) -> Response:
    """Send the nonce a form's token signs."""
    response.set_cookie(CSRF_COOKIE, nonce, max_age=CSRF_MAX_AGE, httponly=True,
                        samesite="Lax", secure=request.is_secure, path="/")
    return response


def csrf_ok() -> bool:
    """True when the form's signed token matches the cookie's nonce and is recent."""
    cookie = request.cookies.get(CSRF_COOKIE)
    field = request.form.get(CSRF_FIELD)
    if not cookie or not field:
        return False
    try:
        nonce = app_state().csrf.loads(field, max_age=CSRF_MAX_AGE)
    except BadSignature:
        return False
    return isinstance(nonce, str) and hmac.compare_digest(nonce, cookie)


# -- the client and the rate limit ------------------------------------------------------------


def client_ip() -> str:
    """The client's address (from X-Forwarded-For only behind RUNLETTER_SERVE_PROXIES)."""
    return request.remote_addr or "unknown"


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


def take_signup_slot() -> bool:
    """Count one signup for this client; False when the hour's allowance is used up."""
    return get_store().take_signup_slot(ip_bucket(client_ip()),
                                        app_state().config.serve.signups_per_hour, RATE_WINDOW,
                                        time.time(), keep=app_state().confirm_ttl)


def mail_bucket(address: str) -> str:
    """The rate-limit key for emails to one (canonical) address: a hash, so the table
    holds no addresses, and a prefix no IP bucket has."""
    return "to:" + hashlib.sha256(address.lower().encode()).hexdigest()[:32]


def take_mail_slot(address: str) -> bool:
    """Count one signup email to this address; False when one went out within the last
    confirm_hours, whose link still works: signups from anywhere cannot fill one inbox."""
    return get_store().take_signup_slot(mail_bucket(address), 1, app_state().confirm_ttl,
                                        time.time(), keep=RATE_WINDOW)


def give_back_mail_slot(address: str) -> None:
    """Let the next signup email this address (the one counted could not be sent)."""
    get_store().give_back_signup_slots(mail_bucket(address))


# -- every request ---------------------------------------------------------------------------


def start_request() -> None:
    """A CSP nonce for the page, and the larger body limit on webhooks."""
    g.csp_nonce = secrets.token_urlsafe(16)
    if request.path.startswith(WEBHOOKS):
        request.max_content_length = WEBHOOK_MAX


def security_headers(response: Response) -> Response:
    """A strict CSP (only the page's own nonce'd style and script: the signup form's time zone
    script), no framing (except /embed), no sniffing, no referrer, no caching."""
    embed = request.path == EMBED
    h = response.headers
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"
    nonce = g.get("csp_nonce", "none")
    ancestors = "*" if embed else "'none'"
    h["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
        "img-src 'self' data:; "
        f"form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}")
    if not embed:
        h["X-Frame-Options"] = "DENY"
        h["Cross-Origin-Opener-Policy"] = "same-origin"
    h.setdefault("Cache-Control", "no-store")
    return response


def init_app(app: Flask) -> None:
    """Body limits, the per-request hooks, and the proxy fix when behind proxies."""
    app.config.update(MAX_CONTENT_LENGTH=FORM_MAX, MAX_FORM_MEMORY_SIZE=FORM_MAX,
                      MAX_FORM_PARTS=50)
    app.before_request(start_request)
    app.after_request(security_headers)
    proxies = int(os.environ.get(PROXIES_ENV, "0") or 0)
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore
