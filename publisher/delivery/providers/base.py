"""The provider interface: a Batch goes in, one Receipt per recipient comes out; a webhook
request goes in, a report of bounces and complaints comes out.

A provider is a plugin: one module (or subpackage) with a class that subclasses Provider
(its sending, its settings as frozen dataclasses, its webhook's `verify_webhook` and
`parse_events`), and one line in the registry, `publisher/delivery/providers/__init__.py`.
The ledger does the bookkeeping (what was sent, what to retry, when); a provider only talks
to its service. Settings come from `[providers.NAME]` in runletter.toml or
`RUNLETTER_<NAME>_<SETTING>` (which wins); a secret only from the environment.
"""

from __future__ import annotations

import dataclasses
import difflib
import email.utils
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from publisher.config import Config
from publisher.delivery.address import Addresser, Compiled, Recipient
from publisher.delivery.providers.webhook import WebhookError, WebhookReport, WebhookRequest
from publisher.errors import Finding, RunletterError
from publisher.model import Edition
from publisher.settings import coerce_text, field_types

T = TypeVar("T")

ACCEPTED, REJECTED, FAILED = "accepted", "rejected", "failed"
TIMEOUT = 30.0  # seconds a provider's connect, or its answer, may take by default


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
    # For a REJECTED one: True when the answer was about the reader's address (they are
    # marked bounced); False when only this copy cannot go (their status is left alone).
    bounce: bool = True


class ProviderConfigError(RunletterError):
    """Bad credentials or settings: stop the whole publish, mark nothing."""


class MessageRefused(ProviderConfigError):
    """The provider refused the message or the sender, not a reader (a DATA-stage 5xx, a
    5.7.x policy, 5.6.x content or 5.3.4 size answer): stop the publish, mark no reader;
    the rows not sent stay sendable for a run after the author fixes it."""


class SendStopped(ProviderConfigError):
    """A fault on this side (a full disk) part-way through a call: stop the publish; the
    receipts say what went out before it, the rest of the call was not sent."""

    def __init__(self, error: RunletterError, receipts: Sequence[Receipt] = ()):
        super().__init__(error.findings)
        self.receipts = tuple(receipts)


def secret(default: str = "") -> Any:
    """A settings field that comes only from the environment, never from runletter.toml.

    (A setting that used to live in another table is declared there, in config.py, as
    `Deprecated(moved_to="providers.NAME.key")`.)"""
    return dataclasses.field(default=default, metadata={"secret": True})


@dataclass(frozen=True)
class NoSettings:
    """The settings of a provider that has none."""


class Provider:
    """Base class for providers. Subclasses set `name`, `max_batch`, `Settings` (and
    `WebhookSettings` to receive webhooks), and implement send()."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""  # the name as people write it, for messages
    max_batch: ClassVar[int] = 100
    # Can one call carry several editions (Postmark's batch can; Mailgun's and SendGrid's
    # bulk calls send one content)? Then a goal's last, partial batch shares a call.
    mixes_editions: ClassVar[bool] = False
    needs_secret_env: ClassVar[bool] = True  # only the outbox may run on a generated secret
    requires: ClassVar[tuple[str, ...]] = ()  # packages sending needs (an optional extra)
    Settings: ClassVar[type] = NoSettings  # a frozen dataclass: [providers.NAME]
    WebhookSettings: ClassVar[type | None] = None  # its `webhook_*` keys; None: no webhook
    webhook_tolerance: ClassVar[float] = 0  # seconds a webhook's signed time may be off
    # Views of Settings, for older callers: setting -> (type, default), and the secrets.
    SETTINGS: ClassVar[Mapping[str, tuple[Any, Any]]] = {}
    SECRETS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hints = field_types(cls.Settings)
        cls.SETTINGS = {f.name: (hints[f.name], f.default)
                        for f in dataclasses.fields(cls.Settings)}
        cls.SECRETS = secret_names(cls.Settings)

    def __init__(self, config: Config, addresser: Addresser, settings: Mapping[str, Any] | Any):
        """`settings`: a Settings, or a mapping of some of them (the rest take defaults)."""
        self.config = config
        self.addresser = addresser
        if not isinstance(settings, self.Settings):
            names = {f.name for f in dataclasses.fields(self.Settings)}
            settings = self.Settings(**{k: v for k, v in settings.items() if k in names})
        self.settings = settings
        # A config problem met after part of a batch went out: the rest of that batch gets
        # FAILED receipts (their rows stay retryable) and the next send() raises it.
        self._fatal: ProviderConfigError | None = None

    @classmethod
    def env_name(cls, setting: str) -> str:
        """RUNLETTER_<NAME>_<SETTING>, where a setting is read from the environment."""
        return f"RUNLETTER_{cls.name.upper()}_{setting.upper()}"

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

    def prepare(self, batches: Sequence[Batch]) -> Any:
        """What one call of these batches sends, built ahead of sending it (the publish does
        this while the call before is on the wire); by default the batches themselves."""
        return list(batches)

    def send_prepared(self, prepared: Any) -> list[Receipt]:
        """Send what `prepare` built, as send_many would the batches."""
        return self.send_many(prepared)

    def stick(self, exc: ProviderConfigError) -> None:
        """Keep a config error met part-way through a batch, for the next send() to raise."""
        self._fatal = exc

    def check_fatal(self) -> None:
        """Raise the config error met in the previous batch, before sending anything."""
        if self._fatal is not None:
            raise self._fatal

    def already_delivered(self, post: str, subscriber_ids: Iterable[int]) -> dict[int, str]:
        """Of these readers left in flight, the ones the provider can show were delivered,
        each with its provider id (only the outbox can look: its files are local)."""
        return {}

    def __enter__(self) -> Provider:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- webhooks -----------------------------------------------------------------------

    @classmethod
    def load_webhook(cls, settings: Any, config: Config) -> Any:
        """What verify_webhook needs, made once at start-up from the webhook settings (a
        parsed key, a certificate); a RunletterError names a wrong setting."""
        return settings

    @classmethod
    def verify_webhook(cls, loaded: Any, request: WebhookRequest) -> Any:
        """The payload of a genuine webhook request; WebhookError otherwise."""
        raise WebhookError(404, f"no webhook for '{cls.name}'")

    @classmethod
    def parse_events(cls, payload: Any) -> WebhookReport:
        """What a verified payload reports."""
        return WebhookReport()


# -- shared plumbing ------------------------------------------------------------------------


def plain(exc: BaseException) -> str:
    """An error as a receipt reason: without the 'runletter:' place a RunletterError adds."""
    if isinstance(exc, RunletterError):
        return "; ".join(finding.message for finding in exc.findings)
    return str(exc) or exc.__class__.__name__


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` as seconds from now: either delay-seconds or an HTTP-date (RFC 9110).

    None when absent or unreadable; never negative.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now())


# -- settings -------------------------------------------------------------------------------


def secret_names(schema: type | None) -> tuple[str, ...]:
    """The fields of a settings dataclass that come only from the environment."""
    return tuple(f.name for f in dataclasses.fields(schema) if f.metadata.get("secret")) \
        if schema is not None else ()


def schemas(cls: type[Provider]) -> tuple[type, ...]:
    """The provider's settings dataclasses: sending, and webhook if it has one."""
    return tuple(s for s in (cls.Settings, cls.WebhookSettings) if s is not None)


def setting_names(cls: type[Provider]) -> list[str]:
    """Every key [providers.NAME] may have."""
    return [f.name for schema in schemas(cls) for f in dataclasses.fields(schema)]


def _coerce(provider: str, key: str, value: Any, kind: type, source: str) -> Any:
    try:
        if isinstance(value, str):  # the environment's text, or a quoted TOML value
            return coerce_text(value, kind)
        if kind is bool and not isinstance(value, bool):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ProviderConfigError(f"{source}: {provider} setting '{key}' must be "
                                  f"{kind.__name__}, not {value!r}") from None


def unknown_env_settings(cls: type[Provider],
                         environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for RUNLETTER_<NAME>_* variables that name none of the provider's settings."""
    environ = os.environ if environ is None else environ
    prefix = f"RUNLETTER_{cls.name.upper()}_"
    keys = [key.upper() for key in setting_names(cls)]
    warnings = []
    for name in sorted(environ):
        if not name.startswith(prefix) or name[len(prefix):] in keys:
            continue
        # Compared without the prefix, which every name shares and would make all look close.
        close = difflib.get_close_matches(name[len(prefix):], keys, n=1, cutoff=0.6)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        warnings.append(f"{name} names no {cls.name} setting and is ignored{hint}; the "
                        f"{cls.name} settings are: {', '.join(prefix + k for k in keys)}")
    return warnings


def read_settings(cls: type[Provider], schema: type[T], config: Config,
                  environ: Mapping[str, str] | None = None) -> T:
    """One of the provider's settings dataclasses, from [providers.NAME] and
    RUNLETTER_<NAME>_<SETTING> (the environment wins)."""
    environ = os.environ if environ is None else environ
    given = _checked_table(cls, config)
    hints = field_types(schema)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(schema):  # type: ignore[arg-type]
        env_name = cls.env_name(f.name)
        if env_name in environ:
            values[f.name] = _coerce(cls.name, f.name, environ[env_name], hints[f.name],
                                     env_name)
        elif f.name in given:
            values[f.name] = _coerce(cls.name, f.name, given[f.name], hints[f.name],
                                     "runletter.toml")
    return schema(**values)


def _checked_table(cls: type[Provider], config: Config) -> dict[str, Any]:
    """[providers.NAME], refused when it names an unknown setting or holds a secret."""
    given = dict(config.providers.get(cls.name, {}))
    names = setting_names(cls)
    secrets = [name for schema in schemas(cls) for name in secret_names(schema)]
    for key in given:
        if key not in names:
            raise ProviderConfigError(f"runletter.toml: unknown setting '{key}' in "
                                      f"[providers.{cls.name}]; settings are: "
                                      f"{', '.join(names)}")
        if key in secrets:
            raise ProviderConfigError(
                f"runletter.toml: [providers.{cls.name}] {key} is a secret; remove it from the "
                f"file and set {cls.env_name(key)} in the environment")
    return given


def provider_settings(cls: type[Provider], config: Config,
                      environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The sending settings, as a mapping (see read_settings)."""
    return dataclasses.asdict(read_settings(cls, cls.Settings, config, environ))


def webhook_configured(cls: type[Provider], config: Config,
                       environ: Mapping[str, str] | None = None) -> bool:
    """True when any of the provider's webhook settings is given, in the file or the
    environment."""
    environ = os.environ if environ is None else environ
    if cls.WebhookSettings is None:
        return False
    given = config.providers.get(cls.name, {})
    return any(f.name in given or cls.env_name(f.name) in environ
               for f in dataclasses.fields(cls.WebhookSettings))


def setting_error(cls: type[Provider], config: Config, key: str, problem: str,
                  environ: Mapping[str, str] | None = None) -> RunletterError:
    """An error about a setting's value, naming where it was given: the environment
    variable, its old place (with the line), or [providers.NAME]."""
    environ = os.environ if environ is None else environ
    if cls.env_name(key) in environ:
        return RunletterError(Finding("environment", None, f"{cls.env_name(key)} {problem}"))
    moved = config.moved_to(f"providers.{cls.name}", key)
    if moved is not None:
        return RunletterError(Finding(moved.warning.path, moved.warning.line,
                                      f"{moved.old} {problem}"))
    return RunletterError(Finding(config.source.name, None,
                                  f"[providers.{cls.name}] {key} {problem}"))
