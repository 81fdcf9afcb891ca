"""Load and validate `runletter.toml`: the newsletter's settings, checked key by key."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from publisher.clock import known_timezone
from publisher.emails import validate_email
from publisher.errors import Finding, RunletterError, suggest
from publisher.settings import read_table, toml_line

# The store a project names: RUNLETTER_DATABASE_URL, else [store] url, else the SQLite file.
ENV = "RUNLETTER_DATABASE_URL"
SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg",
           "postgres": "postgresql+psycopg", "postgresql+psycopg": "postgresql+psycopg"}


def parse_url(text: str, root: Path | None = None):
    """A SQLAlchemy URL for a store URL; a one-line error for one that names no store.

    A relative SQLite path is relative to the project root. A password written in the URL is
    taken from the environment only (RUNLETTER_DATABASE_URL, PGPASSWORD or ~/.pgpass)."""
    # why: SQLAlchemy takes 0.15 s to import, which a verb that never opens the store
    # (build, check, render) should not pay for reading the config.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text.strip())
    except ArgumentError:
        raise RunletterError(f"store URL {printable_url(text)!r} is not a database URL; "
                             "write sqlite:///subscribers/runletter.db or "
                             "postgresql://user@host:5432/dbname") from None
    driver = SCHEMES.get(url.drivername)
    if driver is None:
        raise RunletterError(f"store URL {printable_url(text)!r}: '{url.drivername}' is not a "
                             "store runletter knows; use sqlite:/// or postgresql://")
    url = url.set(drivername=driver)
    if driver == "sqlite":
        if not url.database or url.database == ":memory:":
            raise RunletterError("a SQLite store needs a file: sqlite:///subscribers/runletter.db")
        path = Path(url.database)
        if not path.is_absolute() and root is not None:
            url = url.set(database=str(root / path))
    return url


def printable_url(url: Any) -> str:
    """A URL fit to print: the password, if any, hidden."""
    # why: as in parse_url, SQLAlchemy only when a URL is read
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(str(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a URL)"


CONFIG_NAME = "runletter.toml"


@dataclass(frozen=True)
class Newsletter:
    """[newsletter]: what the newsletter is and where its archive lives."""

    name: str
    base_url: str
    postal_address: str
    topics: tuple[str, ...]
    description: str = ""
    language: str = "en"


@dataclass(frozen=True)
class Sender:
    """[sender]: who the messages come from."""

    name: str
    email: str
    reply_to: str = ""
    unsubscribe_mailto: str = ""


@dataclass(frozen=True)
class Utm:
    """[utm]: the tags on every archive link in a message."""

    source: str = "runletter"
    medium: str = "email"
    campaign: str = "{slug}"


@dataclass(frozen=True)
class Delivery:
    """[delivery]: which provider sends, and how hard it tries."""

    provider: str = "outbox"
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = 900.0  # a provider asking to wait longer stops the run


@dataclass(frozen=True)
class Deprecated:
    """A key no longer read where it is written: `moved_to` is its new place, dotted as
    "table.key" (as MkDocs' `config_options.Deprecated(moved_to=…)`). The old place is
    still read, with a warning, so older files keep working."""

    moved_to: str  # "providers.NAME.key"

    @property
    def table(self) -> str:
        """The table the key now lives in ("providers.NAME")."""
        return self.moved_to.rpartition(".")[0]

    @property
    def key(self) -> str:
        """The key's name in its new table."""
        return self.moved_to.rpartition(".")[2]


@dataclass(frozen=True)
class Serve:
    """[serve]: the reader endpoints' server."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    signups_per_hour: int = 10        # per IP address
    confirm_hours: int = 48           # how long a confirmation link works
    # A provider's webhook settings are in its own table, [providers.NAME]; these were
    # [serve] keys once.
    deprecated: ClassVar[Mapping[str, Deprecated]] = MappingProxyType({
        "postmark_webhook_user": Deprecated(moved_to="providers.postmark.webhook_user"),
        "sendgrid_public_key": Deprecated(moved_to="providers.sendgrid.webhook_public_key"),
        "ses_certificate": Deprecated(moved_to="providers.ses.webhook_certificate"),
        "ses_topic_arn": Deprecated(moved_to="providers.ses.webhook_topic_arn"),
    })


@dataclass(frozen=True)
class Schedule:
    """[schedule]: when dated items (scheduled posts, sequence steps) reach each reader."""

    timezone: str = "UTC"  # for readers who have not given their own
    send_hour: int = 6  # local hour at which a dated item goes out
    grace_days: int = 2  # a dated item more than this late is skipped, never sent


@dataclass(frozen=True)
class StoreSettings:
    """[store]: where readers, the ledger and serve's tables live (RUNLETTER_DATABASE_URL
    wins); empty: the SQLite file at [paths] store."""

    url: str = ""


@dataclass(frozen=True)
class Paths:
    """[paths]: where things are, relative to the project root."""

    content: str = "content"
    layouts: str = "layouts"
    goals: str = "subscribers/goals.toml"
    store: str = "subscribers/runletter.db"
    site: str = "site"
    outbox: str = "outbox"


@dataclass(frozen=True)
class Moved:
    """A setting found where it used to be: read from there, with a warning naming its new
    place (a key in a provider's table)."""

    old: str  # "[serve] key"
    table: str  # "providers.NAME"
    key: str
    warning: Finding


TABLES: dict[str, type] = {"newsletter": Newsletter, "sender": Sender, "utm": Utm,
                           "delivery": Delivery, "serve": Serve, "schedule": Schedule,
                           "store": StoreSettings, "paths": Paths}
FREE_TABLES = {"providers"}  # provider settings are read by each provider's own schema


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
    utm: Utm
    delivery: Delivery
    serve: Serve
    schedule: Schedule
    store: StoreSettings
    providers: Mapping[str, Mapping[str, Any]]
    content_dir: Path
    layouts_dir: Path
    goals_path: Path
    store_path: Path
    site_dir: Path
    outbox_dir: Path
    source: Path = field(default=Path(CONFIG_NAME))
    moved: tuple[Moved, ...] = ()

    def moved_to(self, table: str, key: str) -> Moved | None:
        """Where a setting was read from when it was written in its old place."""
        return next((m for m in self.moved if (m.table, m.key) == (table, key)), None)

    def store_url(self) -> str:
        """The store's URL: RUNLETTER_DATABASE_URL, else [store] url, else the SQLite file at
        [paths] store; a relative SQLite path is the project root's."""
        given = os.environ.get(ENV) or self.store.url
        if not given:
            return f"sqlite:///{self.store_path}"
        return parse_url(given, self.root).render_as_string(hide_password=False)

    def store_file(self) -> Path | None:
        """The store's SQLite file, or None when the store is a PostgreSQL database."""
        url = parse_url(self.store_url())
        return Path(url.database) if url.drivername == "sqlite" else None

    def archive_url(self, path: str = "") -> str:
        """Absolute URL of a page in the web archive."""
        return f"{self.base_url}/{path.lstrip('/')}"


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

    moved = _move_old_keys(data, text, rel)
    findings: list[Finding] = []
    for table in data:
        if table not in TABLES and table not in FREE_TABLES:
            findings.append(Finding(rel, toml_line(text, table), f"unknown table [{table}]"
                                    + suggest(table, [*TABLES, *FREE_TABLES])))
    tables: dict[str, Any] = {}
    for table, cls in TABLES.items():
        tables[table], problems = read_table(
            cls, data.get(table, {}), table, rel,
            lambda key, table=table: toml_line(text, table, key))
        findings.extend(problems)
    providers = data.get("providers", {})
    if not isinstance(providers, dict) or not all(isinstance(v, dict) for v in providers.values()):
        findings.append(Finding(rel, toml_line(text, "providers"),
                                "[providers] must hold one table per provider, "
                                "e.g. [providers.<provider>]"))
        providers = {}

    news: Newsletter = tables["newsletter"]
    sender: Sender = tables["sender"]
    if news.base_url and not re.match(r"^https?://[^/\s]+", news.base_url):
        findings.append(Finding(rel, toml_line(text, "newsletter", "base_url"),
                                "[newsletter] base_url must start with https:// (or http://)"))
    if sender.email and not _is_address(sender.email):
        findings.append(Finding(rel, toml_line(text, "sender", "email"),
                                f"[sender] email '{sender.email}' is not an email address"))
    for key in ("name", "email", "reply_to"):
        value = getattr(sender, key)
        if "\r" in value or "\n" in value:
            findings.append(Finding(rel, toml_line(text, "sender", key),
                                    f"[sender] {key} must be on one line (it goes in a header)"))
    findings.extend(_schedule_findings(tables["schedule"], text, rel))
    findings.extend(_store_findings(tables["store"], text, rel))
    if findings:
        raise RunletterError(findings)

    paths: Paths = tables["paths"]
    return Config(
        root=root,
        name=news.name,
        base_url=news.base_url.rstrip("/"),
        postal_address=news.postal_address,
        topics=news.topics,
        description=news.description,
        language=news.language,
        sender_name=sender.name,
        sender_email=sender.email,
        reply_to=sender.reply_to or sender.email,
        unsubscribe_mailto=sender.unsubscribe_mailto or sender.email,
        utm=tables["utm"],
        delivery=tables["delivery"],
        serve=tables["serve"],
        schedule=tables["schedule"],
        store=tables["store"],
        providers=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in providers.items()}),
        content_dir=root / paths.content,
        layouts_dir=root / paths.layouts,
        goals_path=root / paths.goals,
        store_path=root / paths.store,
        site_dir=root / paths.site,
        outbox_dir=root / paths.outbox,
        source=path,
        moved=moved,
    )


def _schedule_findings(schedule: Schedule, text: str, rel: str) -> list[Finding]:
    """[schedule] values that cannot time anything: an unknown zone, an hour off the clock."""
    found = []
    if not known_timezone(schedule.timezone):
        found.append(Finding(rel, toml_line(text, "schedule", "timezone"),
                             f"[schedule] timezone '{schedule.timezone}' is not an IANA time "
                             "zone; write e.g. \"UTC\" or \"Europe/Madrid\""))
    if not 0 <= schedule.send_hour <= 23:
        found.append(Finding(rel, toml_line(text, "schedule", "send_hour"),
                             f"[schedule] send_hour must be 0 to 23 (a local hour), "
                             f"not {schedule.send_hour}"))
    if schedule.grace_days < 0:
        found.append(Finding(rel, toml_line(text, "schedule", "grace_days"),
                             "[schedule] grace_days cannot be negative"))
    return found


def _store_findings(store: StoreSettings, text: str, rel: str) -> list[Finding]:
    """[store] url: a database runletter knows, and never a password in the file."""
    if not store.url:
        return []
    line = toml_line(text, "store", "url")
    try:
        url = parse_url(store.url)
    except RunletterError as exc:
        return [Finding(rel, line, f"[store] url: {exc.findings[0].message}")]
    if url.password:
        return [Finding(rel, line, "[store] url holds a password; passwords come only from "
                        "the environment: remove it and set PGPASSWORD (or a ~/.pgpass file), "
                        "or give the whole URL in RUNLETTER_DATABASE_URL")]
    return []


def _is_address(text: str) -> bool:
    """An address the store would take, written as it goes in a header (no space around)."""
    return validate_email(text) is None and text == text.strip()


def _move_old_keys(data: dict[str, Any], text: str, rel: str) -> tuple[Moved, ...]:
    """Settings still written where they used to be (each table's `deprecated` keys),
    moved into their new table (where a value already given wins); each with its warning."""
    found = []
    for name, cls in TABLES.items():
        deprecated: Mapping[str, Deprecated] = getattr(cls, "deprecated", {})
        table = data.get(name)
        if not deprecated or not isinstance(table, dict):
            continue
        for old in [key for key in table if key in deprecated]:  # in the file's order
            new = deprecated[old]
            target = _table_at(data, new.table)
            if target is None:
                continue
            target.setdefault(new.key, table.pop(old))
            warning = Finding(rel, toml_line(text, name, old), f"[{name}] {old} has moved: "
                              f"write it as {new.key} in [{new.table}]", "warning")
            found.append(Moved(f"[{name}] {old}", new.table, new.key, warning))
    return tuple(found)


def _table_at(data: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    """The table at a dotted path ("providers.ses"), made when missing; None when something
    other than a table is in the way (load_config reports that)."""
    table: Any = data
    for part in dotted.split("."):
        if not isinstance(table, dict):
            return None
        table = table.setdefault(part, {})
    return table if isinstance(table, dict) else None
