"""`runletter db`: the store's schema brought up to date, the store described, and a whole
store copied to another (SQLite or PostgreSQL, either way). Each returns data; `cli/db.py`
prints it. A password never comes from the command line and is never shown."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from publisher.config import ENV, find_root, load_config, parse_url, printable_url
from publisher.errors import Finding, RunletterError
from publisher.store import Store
from publisher.store.copying import copy_rows, row_counts
from publisher.store.database import connect
from publisher.store.mailboxes import recorded_merges
from publisher.store.upgrade import HEAD, version_of


@dataclass(frozen=True)
class Upgraded:
    """A store brought to the newest schema, from `before` (None: it was just made)."""

    store: str
    before: int | None
    after: int
    merged: tuple = ()  # store.mailboxes.Merge: readers one mailbox held twice, now one


@dataclass(frozen=True)
class Status:
    """Which store, in which database, at which schema version, holding how many rows."""

    store: str
    dialect: str
    version: int | None  # None: no tables yet
    latest: int  # the version this runletter brings a store to
    counts: dict[str, int]  # table -> rows, in copy order, of the tables the store has


@dataclass(frozen=True)
class Copied:
    """A finished copy: each table's rows in the source and, afterwards, in the target."""

    source: str
    target: str
    counts: tuple[tuple[str, int, int], ...]

    @property
    def differ(self) -> tuple[str, ...]:
        """The tables whose counts are not the same on both sides."""
        return tuple(name for name, there, here in self.counts if there != here)


def project_url(start: Path | None = None) -> str:
    """The URL of the project's store: the environment's, [store] url's, or its SQLite file."""
    return load_config(find_root(start)).store_url()


def display(url: Any) -> str:
    """A store URL as the CLI prints it: the password hidden, the driver's name left out."""
    parsed = parse_url(str(url)) if isinstance(url, str) else url
    if parsed.drivername != "sqlite":
        parsed = parsed.set(drivername="postgresql")
    return parsed.render_as_string(hide_password=True)


def upgrade(url: str) -> Upgraded:
    """Bring the store at url to the newest schema (making it when there is none)."""
    before = _described(url, version_of)
    with Store.open(url) as store:
        # Only the upgrade that ran migration 0007 reports its merges (they stay audited).
        merged = tuple(recorded_merges(store.conn)) if before and before < 7 else ()
        return Upgraded(display(url), before, store.schema_version, merged)


def status(url: str) -> Status:
    """The store at url as it is (never migrated, never made): dialect, version, rows."""
    found = _described(url, lambda conn: (conn.dialect, version_of(conn), row_counts(conn)))
    dialect, version, counts = found or ("sqlite", None, {})
    return Status(display(url), dialect, version, int(HEAD), counts)


def _described(url: str, read: Callable[[Any], Any]) -> Any:
    """What `read` finds through a connection to the store at url; None for a SQLite file
    that does not exist (which is left unmade)."""
    parsed = parse_url(url)
    if parsed.drivername == "sqlite" and not Path(parsed.database).exists():
        return None
    conn = connect(url)
    try:
        return read(conn)
    except DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0]
        raise RunletterError(Finding(display(url), None,
                                     f"not a usable subscriber store: {first}")) from None
    finally:
        conn.close()


def given_url(text: str, root: Path, label: str) -> str:
    """A store URL from the command line (`label` names the argument): a relative SQLite path
    is root's; a password is refused, but one the environment's URL holds for the same
    database is taken from there."""
    url = parse_url(text, root)
    if url.password is not None:
        raise RunletterError(Finding(label, None, f"{printable_url(text)} holds a password; "
                                     "passwords come only from the environment: remove it "
                                     "and set PGPASSWORD (or a ~/.pgpass line)"))
    environment = os.environ.get(ENV)
    if environment and url.drivername != "sqlite":
        theirs = parse_url(environment, root)
        if theirs.password and _identity(theirs) == _identity(url) \
                and theirs.username == url.username and theirs.query == url.query:
            url = theirs
    return url.render_as_string(hide_password=False)


def copy(source_text: str, target_text: str, force: bool = False, start: Path | None = None,
         progress: Callable[[str, int], None] = lambda table, rows: None) -> Copied:
    """Copy every table of one store into another (both brought to the newest schema first)
    in one transaction on the target, then count both sides. A target that holds rows is
    refused unless `force`, and then its rows are replaced."""
    root = _root(start)
    source = given_url(source_text, root, "SOURCE_URL")
    target = given_url(target_text, root, "TARGET_URL")
    _check_pair(source, target)
    with Store.open(source) as there, Store.open(target) as here:
        held = {name: rows for name, rows in row_counts(here.conn).items() if rows}
        if held and not force:
            listed = ", ".join(f"{name} {rows}" for name, rows in held.items())
            raise RunletterError(Finding("TARGET_URL", None, f"{display(target)} already "
                                         f"holds rows ({listed}); pass --force to replace "
                                         "them"))
        counts = copy_rows(there, here, replace=bool(held), progress=progress)
        after = row_counts(here.conn)
    return Copied(display(source), display(target),
                  tuple((name, rows, after.get(name, 0)) for name, rows in counts.items()))


def _root(start: Path | None) -> Path:
    """Where a relative SQLite path starts: the project's folder, else the current one."""
    try:
        return find_root(start)
    except RunletterError:
        return (start or Path.cwd()).resolve()


def _check_pair(source: str, target: str) -> None:
    """Refuse a copy of a store onto itself, and a SQLite source that does not exist."""
    there, here = parse_url(source), parse_url(target)
    if there.drivername == "sqlite" and not Path(there.database).is_file():
        raise RunletterError(Finding("SOURCE_URL", None, f"no store at {there.database}"))
    if _identity(there) == _identity(here):
        raise RunletterError(Finding("TARGET_URL", None, "the same store as SOURCE_URL "
                                     f"({display(here)}); copy to another one"))


def _identity(url: Any) -> tuple:
    """What names one database, however its URL is written."""
    if url.drivername == "sqlite":
        return ("sqlite", str(Path(url.database).resolve()))
    return (url.host or "localhost", url.port or 5432, url.database)
