"""What every request of one newsletter's app shares, built once by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import current_app

if TYPE_CHECKING:
    from itsdangerous import URLSafeTimedSerializer
    from jinja2 import Environment

    from publisher.config import Config
    from publisher.delivery.tokens import Signer
    from publisher.model import Goals
    from publisher.serve.mailer import Mailer

EXTENSION = "runletter"  # the key of app.extensions


@dataclass(frozen=True)
class AppState:
    """One newsletter's settings, goals, signer, layouts, mailer and CSRF serializer;
    `app.extensions["runletter"]`. The store's connections and the webhook receivers are
    their own modules' extensions (`serve.db`, `serve.webhooks`), so this module needs
    neither."""

    config: Config
    goals: Goals
    signer: Signer
    env: Environment
    mailer: Mailer
    csrf: URLSafeTimedSerializer

    def __getitem__(self, key: str) -> Any:
        """Attributes by name too, the way Flask extensions are usually looked up."""
        return getattr(self, key)

    @property
    def confirm_ttl(self) -> int:
        """Seconds a confirmation link works."""
        return self.config.serve.confirm_hours * 3600


def app_state() -> AppState:
    """The AppState of the app handling the current request."""
    return current_app.extensions[EXTENSION]
