"""The provider interface: a Batch goes in, one Receipt per recipient comes out.

A provider is a plugin: one module with a class that subclasses Provider, and one line in
`publisher/providers/__init__.py`'s registry. The ledger does the bookkeeping (what was
sent, what to retry, when); a provider only talks to its service.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ..address import Addresser, Compiled, Recipient
from ..config import Config
from ..errors import RunletterError
from ..model import Edition

ACCEPTED, REJECTED, FAILED = "accepted", "rejected", "failed"


@dataclass(frozen=True)
class Batch:
    """One edition and up to the provider's limit of recipients with their merge values."""

    edition: Edition
    compiled: Compiled
    recipients: tuple[Recipient, ...]


@dataclass(frozen=True)
class Receipt:
    """What the provider said about one recipient of a batch."""

    subscriber_id: int
    status: Literal["accepted", "rejected", "failed"]
    provider_id: str | None = None
    reason: str = ""
    retry_after: float | None = None  # seconds, when the provider said so
    # False for a FAILED reader the provider made no call for (it had just asked to wait):
    # that try does not count against max_attempts.
    tried: bool = True


class ProviderConfigError(RunletterError):
    """Bad credentials or settings: stop the whole publish, mark nothing."""


class Provider:
    """Base class for providers. Subclasses set `name`, `max_batch`, and implement send()."""

    name: ClassVar[str] = ""
    max_batch: ClassVar[int] = 100
    # Can one call carry several editions (Postmark's batch can; Mailgun's and SendGrid's
    # bulk calls send one content)? Then a goal's last, partial batch shares a call.
    mixes_editions: ClassVar[bool] = False
    needs_secret_env: ClassVar[bool] = True  # only the outbox may run on a generated secret
    # setting -> (type, default); a setting named in SECRETS comes only from the environment
    SETTINGS: ClassVar[Mapping[str, tuple[type, Any]]] = {}
    SECRETS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Config, addresser: Addresser, settings: Mapping[str, Any]):
        self.config = config
        self.addresser = addresser
        self.settings = settings

    def open(self) -> None:
        """Connect (one pooled session or connection per publish)."""

    def close(self) -> None:
        """Disconnect."""

    def send(self, batch: Batch) -> list[Receipt]:
        """Send one batch; return one receipt per recipient, in any order."""
        raise NotImplementedError

    def send_many(self, batches: Sequence[Batch]) -> list[Receipt]:
        """Send batches of different editions, together in one call where the API allows;
        at most max_batch recipients in all."""
        receipts: list[Receipt] = []
        for batch in batches:
            receipts += self.send(batch)
        return receipts

    def __enter__(self) -> Provider:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _coerce(provider: str, key: str, value: Any, kind: type, source: str) -> Any:
    if kind is bool and isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off", ""):
            return False
    try:
        if kind is bool and not isinstance(value, bool):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ProviderConfigError(f"{source}: {provider} setting '{key}' must be "
                                  f"{kind.__name__}, not {value!r}") from None


def unknown_env_settings(cls: type[Provider],
                         environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for RUNLETTER_<NAME>_* variables that name none of the provider's settings."""
    from ..webhooks import MAILGUN_KEY_ENV, POSTMARK_PASSWORD_ENV

    environ = os.environ if environ is None else environ
    prefix = f"RUNLETTER_{cls.name.upper()}_"
    keys = [key.upper() for key in cls.SETTINGS]
    # Read by `runletter serve`'s webhooks, not settings of the sending provider.
    elsewhere = {MAILGUN_KEY_ENV, POSTMARK_PASSWORD_ENV}
    warnings = []
    for name in sorted(environ):
        if not name.startswith(prefix) or name[len(prefix):] in keys or name in elsewhere:
            continue
        # Compared without the prefix, which every name shares and would make all look close.
        close = difflib.get_close_matches(name[len(prefix):], keys, n=1, cutoff=0.6)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        warnings.append(f"{name} names no {cls.name} setting and is ignored{hint}; the "
                        f"{cls.name} settings are: {', '.join(prefix + k for k in keys)}")
    return warnings


def provider_settings(cls: type[Provider], config: Config,
                      environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Merge [providers.NAME] with RUNLETTER_<NAME>_<SETTING> (the environment wins)."""
    environ = os.environ if environ is None else environ
    given = dict(config.providers.get(cls.name, {}))
    settings: dict[str, Any] = {}
    for key in given:
        if key not in cls.SETTINGS:
            raise ProviderConfigError(f"runletter.toml: unknown setting '{key}' in "
                                      f"[providers.{cls.name}]; settings are: "
                                      f"{', '.join(cls.SETTINGS)}")
        if key in cls.SECRETS:
            raise ProviderConfigError(
                f"runletter.toml: [providers.{cls.name}] {key} is a secret; remove it from the "
                f"file and set RUNLETTER_{cls.name.upper()}_{key.upper()} in the environment")
    for key, (kind, default) in cls.SETTINGS.items():
        env_name = f"RUNLETTER_{cls.name.upper()}_{key.upper()}"
        if env_name in environ:
            settings[key] = _coerce(cls.name, key, environ[env_name], kind, env_name)
        elif key in given:
            settings[key] = _coerce(cls.name, key, given[key], kind, "runletter.toml")
        else:
            settings[key] = default
    return settings
