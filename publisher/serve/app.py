"""The application factory: one Flask app for one newsletter."""

from __future__ import annotations

import logging
import sys

from flask import Flask
from itsdangerous import URLSafeTimedSerializer

from publisher.config import Config
from publisher.delivery.tokens import Signer
from publisher.model import Goals
from publisher.render.layouts import layout_environment
from publisher.serve import db, security, ui
from publisher.serve.context import EXTENSION, AppState
from publisher.serve.mailer import Mailer
from publisher.serve.pages import bp as pages
from publisher.serve.plans import bp as plans
from publisher.serve.webhooks import bp as webhooks
from publisher.serve.webhooks import init_app as webhooks_init
from publisher.store import Store

LAYOUTS = ("subscribe", "embed", "message", "confirm", "unsubscribe", "preferences", "email",
           "ready")


def create_app(config: Config, goals: Goals, secret: str) -> Flask:
    """The Flask app for one newsletter (used by `runletter serve`, and by tests)."""
    _log_to_stderr()
    signer = Signer(secret)
    env = layout_environment(config, "web")
    env.globals["csrf_field"] = security.CSRF_FIELD
    for name in LAYOUTS:
        env.get_template(f"serve/{name}.html.j2")  # a broken layout fails at start-up
    Store.open(config.store_url()).close()  # create or migrate the store before workers start

    app = Flask("runletter.serve")
    app.extensions[EXTENSION] = AppState(
        config=config, goals=goals, signer=signer, env=env,
        mailer=Mailer(config, signer, env),
        csrf=URLSafeTimedSerializer(secret, salt="runletter.serve.csrf"))
    security.init_app(app)
    db.init_app(app, config.store_url())
    webhooks_init(app, config)
    ui.init_app(app)
    app.register_blueprint(pages)
    app.register_blueprint(plans)
    app.register_blueprint(webhooks)
    return app


def _log_to_stderr() -> None:
    log = logging.getLogger("runletter.serve")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[runletter serve] %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
