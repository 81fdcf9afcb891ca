"""`runletter serve`: the other end of every link in a message, and the providers' webhooks.

A Flask app in the shape of Flask's own tutorial: `app.create_app` (the factory), `pages`
(the reader pages' blueprint), `plans` (ready at a gated step, the calendar feed),
`webhooks` (the providers' blueprint), `db` (the request's store on `g`), `security` (CSRF,
headers, rate limit), `ui` (pages, links, error pages), `mailer` (the confirmation emails),
`server` (gunicorn and the command). What each endpoint does, and why, is in docs/serve.md.
"""

from __future__ import annotations

from publisher.serve.app import create_app
from publisher.serve.server import (
           THREADS,
           gunicorn_options,
           main,
           prepare,
           run_server,
           serve_command,
)

__all__ = ["THREADS", "create_app", "gunicorn_options", "main", "prepare", "run_server",
           "serve_command"]

