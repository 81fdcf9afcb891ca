"""`runletter subscribers`: import, add, remove, list, export and unbounce readers."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from publisher.arrivals import ArrivalOptions, import_file
from publisher.content.sequences import SIGNUP, load_sequences
from publisher.errors import RunletterError, suggest
from publisher.project import Project
from publisher.store import Store
from publisher.store.changes import not_bounced
from publisher.store.records import check_race_date, check_race_name, check_timezone

if TYPE_CHECKING:
    from publisher.arrivals.report import ArrivalReport
    from publisher.store import Subscriber


def import_readers(project: Project, csv_file: Path, source: str = "auto",
                   status: str | None = None, goal: str | None = None,
                   maps: tuple[str, ...] = (), dry_run: bool = False,
                   enrol: bool = False) -> ArrivalReport:
    """Import readers from a CSV export (`source`: the tool that wrote it, or auto) in one
    transaction; bad rows are findings, and skipped. A dry run writes nothing. New readers
    join the signup sequences only with `enrol` (from the time of the import)."""
    if not csv_file.is_file():
        raise RunletterError(f"{csv_file}: no such file")
    options = ArrivalOptions(source=source, status=status, goal=goal, maps=maps,
                             dry_run=dry_run, enrol=enrol)
    with _import_store(project, dry_run) as store:
        report = import_file(store, csv_file, project.goals, options, display=str(csv_file))
    return replace(report, signup_sequences=_signup_sequences(project))


def _signup_sequences(project: Project) -> tuple[str, ...]:
    """The slugs of the newsletter's signup sequences (none named when they cannot be read:
    `check` reports why)."""
    try:
        found = load_sequences(project.config.content_dir, project.root, project.goals)
    except RunletterError:
        return ()
    return tuple(s.slug for s in found if s.anchor == SIGNUP)


@contextlib.contextmanager
def _import_store(project: Project, dry_run: bool) -> Iterator[Store]:
    """The store to import into; a dry run with no store yet reads an empty throwaway one."""
    local = project.config.store_file()
    if not dry_run or local is None or local.exists():
        with Store.open(project.config.store_url()) as store:
            yield store
        return
    with tempfile.TemporaryDirectory() as folder, Store.open(Path(folder) / "dry.db") as store:
        yield store


def add_reader(project: Project, email: str, goal: str, first_name: str, tags: str,
               race_date: str | None = None, race_name: str = "",
               timezone: str = "") -> Subscriber:
    """Add one active reader (consent source: cli); tags are separated by ';'."""
    if project.goals.get(goal) is None:
        raise RunletterError(f"unknown goal '{goal}'" + suggest(goal, project.goals.slugs)
                             + f"; goals are: {', '.join(project.goals.slugs)}")
    race = {"race_date": race_date, "race_name": race_name, "timezone": timezone}
    _check_flags(race)
    with Store.open(project.config.store_url()) as store:
        return store.add(email, goal=goal, first_name=first_name,
                         tags=[t for t in tags.split(";") if t.strip()], consent_source="cli",
                         **race)


def _check_flags(values: dict[str, str | None]) -> None:
    """The store's checks of these fields, each refusal naming its flag (--race-date …)."""
    checks = {"race_date": check_race_date, "race_name": check_race_name,
              "timezone": check_timezone}
    for field, value in values.items():
        try:
            checks[field](value)
        except RunletterError as exc:
            # The store's message starts with the field's name; the user typed the flag.
            flag = "--" + field.replace("_", "-")
            raise RunletterError(exc.findings[0].message.replace(field, flag, 1)) from None


def remove_reader(project: Project, email: str) -> None:
    """Delete a reader and their delivery history (the audit trail keeps the removal)."""
    with Store.open(project.config.store_url()) as store:
        if not store.remove(email):
            raise RunletterError(f"no reader {email}; 'runletter subscribers list' shows them")


def list_readers(project: Project, goal: str | None,
                 status: str | None) -> Iterator[Subscriber]:
    """Readers by email, streamed from the store (only one goal and/or status when given)."""
    with Store.open(project.config.store_url()) as store:
        yield from store.list(goal=goal, status=status)


def export_readers(project: Project, out: TextIO, goal: str | None, status: str | None) -> int:
    """Write readers as CSV to `out`; how many rows were written."""
    with Store.open(project.config.store_url()) as store:
        return store.export_csv(out, goal=goal, status=status)


def bounced_reader(project: Project, email: str) -> tuple[Subscriber, str]:
    """A bounced reader and why they bounced (the audit's reason), for unbounce to show
    before it asks; a RunletterError for an unknown address or any other status."""
    with Store.open(project.config.store_url()) as store:
        reader = store.get(email)
        if reader is None:
            raise RunletterError(f"no reader {email}; 'runletter subscribers list' shows them")
        if reader.status != "bounced":
            raise RunletterError(not_bounced(reader))
        last = store.last_change(reader.id)
    return reader, last.reason if last is not None else ""


def unbounce_reader(project: Project, email: str) -> Subscriber:
    """Make a bounced reader active again, audited as the author's undo."""
    with Store.open(project.config.store_url()) as store:
        return store.unbounce(email, "unbounced by the author (cli): the bounce was a mistake")
