"""Load and validate `runletter.toml`: the newsletter's settings, checked key by key."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import Finding, RunletterError, suggest

CONFIG_NAME = "runletter.toml"
REQUIRED = object()

# table -> key -> (type, default). REQUIRED marks keys the author must set.
SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], Any]]] = {
    "newsletter": {
        "name": (str, REQUIRED),
        "base_url": (str, REQUIRED),
        "postal_address": (str, REQUIRED),
        "topics": (list, REQUIRED),
        "description": (str, ""),
        "language": (str, "en"),
    },
    "sender": {
        "name": (str, REQUIRED),
        "email": (str, REQUIRED),
        "reply_to": (str, ""),
        "unsubscribe_mailto": (str, ""),
    },
    "utm": {
        "source": (str, "runletter"),
        "medium": (str, "email"),
        "campaign": (str, "{slug}"),
    },
    "delivery": {
        "provider": (str, "outbox"),
        "max_attempts": (int, 5),
        "backoff_base": ((int, float), 1.0),
        "backoff_max": ((int, float), 60.0),
        "retry_after_max": ((int, float), 900.0),  # a longer Retry-After stops the run
    },
    "serve": {
        "host": (str, "127.0.0.1"),
        "port": (int, 8000),
        "workers": (int, 2),
        "signups_per_hour": (int, 10),        # per IP address
        "confirm_hours": (int, 48),           # how long a confirmation link works
        "postmark_webhook_user": (str, "runletter"),  # password from the environment
        "sendgrid_public_key": (str, ""),     # Event Webhook verification key (base64 DER)
        "ses_certificate": (str, ""),         # path to the SNS signing certificate (PEM)
        "ses_topic_arn": (str, ""),           # the SNS topic allowed to post notifications
    },
    "paths": {
        "content": (str, "content"),
        "layouts": (str, "layouts"),
        "goals": (str, "subscribers/goals.toml"),
        "store": (str, "subscribers/runletter.db"),
        "site": (str, "site"),
        "outbox": (str, "outbox"),
    },
}
FREE_TABLES = {"providers"}  # provider settings are validated by each provider


@dataclass(frozen=True)
class Config:
    """Validated site settings; paths are absolute, resolved against the project root."""

    root: Path
    name: str
    base_url: str
    postal_address: str
    topics: tuple[str, ...]
    description: str
    language: str
    sender_name: str
    sender_email: str
    reply_to: str
    unsubscribe_mailto: str
    utm: Mapping[str, str]
    delivery: Mapping[str, Any]
    serve: Mapping[str, Any]
    providers: Mapping[str, Mapping[str, Any]]
    content_dir: Path
    layouts_dir: Path
    goals_path: Path
    store_path: Path
    site_dir: Path
    outbox_dir: Path
    source: Path = field(default=Path(CONFIG_NAME))

    def archive_url(self, path: str = "") -> str:
        """Absolute URL of a page in the web archive."""
        return f"{self.base_url}/{path.lstrip('/')}"


def _line_of(text: str, table: str, key: str | None = None) -> int | None:
    """Best-effort line of `[table]` (or of `key` inside it) for error messages."""
    lines = text.splitlines()
    current = None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", line)
        if header:
            current = header.group(1)
            if key is None and current == table:
                return number
            continue
        if key is not None and current == table and re.match(rf"^{re.escape(key)}\s*=", line):
            return number
    return None


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", float: "a number", list: "a list",
             bool: "true or false"}
    if isinstance(kind, tuple):
        return "a number"
    return names.get(kind, kind.__name__)


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` that holds a runletter.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise RunletterError(
        f"{CONFIG_NAME}: not found in {here} or any folder above it; "
        "run 'runletter init DIR' to start a newsletter, or cd into one"
    )


def load_config(root: Path) -> Config:
    """Read and validate `root/runletter.toml`; raise RunletterError naming file and key."""
    path = root / CONFIG_NAME
    rel = CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunletterError(f"{rel}: not found; run 'runletter init DIR' to create one") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise RunletterError(
            Finding(rel, int(match.group(1)) if match else None, f"not valid TOML: {exc}")
        ) from None

    findings: list[Finding] = []
    values: dict[str, dict[str, Any]] = {}
    for table in data:
        if table not in SCHEMA and table not in FREE_TABLES:
            findings.append(Finding(rel, _line_of(text, table), f"unknown table [{table}]"
                                    + suggest(table, [*SCHEMA, *FREE_TABLES])))
    for table, keys in SCHEMA.items():
        given = data.get(table, {})
        if not isinstance(given, dict):
            findings.append(Finding(rel, None, f"'{table}' must be a table [{table}]"))
            given = {}
        values[table] = {}
        for key in given:
            if key not in keys:
                findings.append(Finding(rel, _line_of(text, table, key),
                                        f"unknown key '{key}' in [{table}]" + suggest(key, keys)))
        for key, (kind, default) in keys.items():
            if key not in given:
                if default is REQUIRED:
                    findings.append(Finding(rel, _line_of(text, table),
                                            f"missing required key '{key}' in [{table}]"))
                values[table][key] = default
                continue
            value = given[key]
            if isinstance(value, bool) or not isinstance(value, kind):
                findings.append(Finding(rel, _line_of(text, table, key),
                                        f"[{table}] {key} must be {_type_name(kind)}"))
            values[table][key] = value
    providers = data.get("providers", {})
    if not isinstance(providers, dict) or not all(isinstance(v, dict) for v in providers.values()):
        findings.append(Finding(rel, _line_of(text, "providers"),
                                "[providers] must hold one table per provider, "
                                "e.g. [providers.smtp]"))
        providers = {}

    news = values["newsletter"]
    if isinstance(news["topics"], list) and not all(isinstance(t, str) for t in news["topics"]):
        findings.append(Finding(rel, _line_of(text, "newsletter", "topics"),
                                "[newsletter] topics must be a list of strings"))
    base_url = news["base_url"]
    if isinstance(base_url, str) and not re.match(r"^https?://[^/\s]+", base_url):
        findings.append(Finding(rel, _line_of(text, "newsletter", "base_url"),
                                "[newsletter] base_url must start with https:// (or http://)"))
    sender_email = values["sender"]["email"]
    if isinstance(sender_email, str) and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", sender_email):
        findings.append(Finding(rel, _line_of(text, "sender", "email"),
                                f"[sender] email '{sender_email}' is not an email address"))
    for table, key in (("sender", "name"), ("sender", "email"), ("sender", "reply_to")):
        value = values[table][key]
        if isinstance(value, str) and ("\r" in value or "\n" in value):
            findings.append(Finding(rel, _line_of(text, table, key),
                                    f"[{table}] {key} must be on one line (it goes in a header)"))
    if findings:
        raise RunletterError(findings)

    paths = values["paths"]
    return Config(
        root=root,
        name=news["name"],
        base_url=news["base_url"].rstrip("/"),
        postal_address=news["postal_address"],
        topics=tuple(news["topics"]),
        description=news["description"],
        language=news["language"],
        sender_name=values["sender"]["name"],
        sender_email=values["sender"]["email"],
        reply_to=values["sender"]["reply_to"] or values["sender"]["email"],
        unsubscribe_mailto=values["sender"]["unsubscribe_mailto"] or values["sender"]["email"],
        utm=MappingProxyType(dict(values["utm"])),
        delivery=MappingProxyType(dict(values["delivery"])),
        serve=MappingProxyType(dict(values["serve"])),
        providers=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in providers.items()}),
        content_dir=root / paths["content"],
        layouts_dir=root / paths["layouts"],
        goals_path=root / paths["goals"],
        store_path=root / paths["store"],
        site_dir=root / paths["site"],
        outbox_dir=root / paths["outbox"],
        source=path,
    )
