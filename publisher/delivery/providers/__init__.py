"""The provider registry: adding a provider is one module (or subpackage) and one line here."""

from __future__ import annotations

import importlib

from publisher.delivery.providers.base import Provider
from publisher.errors import RunletterError, suggest

# name -> "module:Class"; imported only when chosen, so optional SDKs stay optional.
REGISTRY: dict[str, str] = {
    "outbox": "publisher.delivery.providers.outbox:OutboxProvider",
    "smtp": "publisher.delivery.providers.smtp:SmtpProvider",
    "ses": "publisher.delivery.providers.ses.sending:SesProvider",
    "postmark": "publisher.delivery.providers.postmark.sending:PostmarkProvider",
    "mailgun": "publisher.delivery.providers.mailgun:MailgunProvider",
    "sendgrid": "publisher.delivery.providers.sendgrid:SendgridProvider",
}


def provider_class(name: str) -> type[Provider]:
    """The Provider class registered under `name`, with the packages it sends with."""
    cls = registered_class(name)
    for package in cls.requires:
        try:
            importlib.import_module(package)
        except ImportError:
            raise _not_installed(name, package) from None
    return cls


def registered_class(name: str) -> type[Provider]:
    """The Provider class registered under `name` (its sending packages not checked: its
    webhook needs none of them)."""
    if name not in REGISTRY:
        raise RunletterError(f"unknown provider '{name}'" + suggest(name, REGISTRY)
                             + f"; providers are: {', '.join(REGISTRY)}")
    module_name, _, class_name = REGISTRY[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _not_installed(name, exc.name) from None
    return getattr(module, class_name)


def _not_installed(name: str, package: str | None) -> RunletterError:
    return RunletterError(f"provider '{name}' needs a package that is not installed "
                          f"({package}); install it with: pip install 'runletter[{name}]'")


def webhook_classes() -> dict[str, type[Provider]]:
    """Every registered provider that receives webhooks, by name (those that cannot be
    imported are left out)."""
    found = {}
    for name in REGISTRY:
        try:
            cls = registered_class(name)
        except RunletterError:
            continue
        if cls.WebhookSettings is not None:
            found[name] = cls
    return found

