"""The provider registry: adding a provider is one module and one line here."""

from __future__ import annotations

import importlib

from ..errors import RunletterError, suggest
from .base import Provider

# name -> "module:Class"; imported only when chosen, so optional SDKs stay optional.
REGISTRY: dict[str, str] = {
    "outbox": "publisher.providers.outbox:OutboxProvider",
    "smtp": "publisher.providers.smtp:SmtpProvider",
    "ses": "publisher.providers.ses:SesProvider",
    "postmark": "publisher.providers.postmark:PostmarkProvider",
    "mailgun": "publisher.providers.mailgun:MailgunProvider",
    "sendgrid": "publisher.providers.sendgrid:SendgridProvider",
}


def provider_class(name: str) -> type[Provider]:
    """The Provider class registered under `name`."""
    if name not in REGISTRY:
        raise RunletterError(f"unknown provider '{name}'" + suggest(name, REGISTRY)
                             + f"; providers are: {', '.join(REGISTRY)}")
    module_name, _, class_name = REGISTRY[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RunletterError(f"provider '{name}' needs a package that is not installed "
                             f"({exc.name}); install it with: pip install 'runletter[{name}]'"
                             ) from None
    return getattr(module, class_name)
