"""`runletter subscribers`: import, add, remove, list and export readers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..errors import RunletterError, suggest
from ..project import Project

if TYPE_CHECKING:
    from ..store import ImportReport, Store, Subscriber


def open_store(project: Project) -> Store:
    """The subscriber store named in runletter.toml (created on first use)."""
    from ..store import Store

    return Store.open(project.config.store_path)


def import_readers(project: Project, csv_file: Path) -> ImportReport:
    """Import readers from CSV in one transaction; bad rows are findings, and skipped."""
    if not csv_file.is_file():
        raise RunletterError(f"{csv_file}: no such file")
    with open_store(project) as store:
        return store.import_csv(csv_file, project.goals, display=str(csv_file))


def add_reader(project: Project, email: str, goal: str, first_name: str,
               tags: str) -> Subscriber:
    """Add one active reader (consent source: cli); tags are separated by ';'."""
    if project.goals.get(goal) is None:
        raise RunletterError(f"unknown goal '{goal}'" + suggest(goal, project.goals.slugs)
                             + f"; goals are: {', '.join(project.goals.slugs)}")
    with open_store(project) as store:
        return store.add(email, goal=goal, first_name=first_name,
                         tags=[t for t in tags.split(";") if t.strip()], consent_source="cli")


def remove_reader(project: Project, email: str) -> None:
    """Delete a reader and their delivery history (the audit trail keeps the removal)."""
    with open_store(project) as store:
        if not store.remove(email):
            raise RunletterError(f"no reader {email}; 'runletter subscribers list' shows them")


def list_readers(project: Project, goal: str | None,
                 status: str | None) -> Iterator[Subscriber]:
    """Readers by email, streamed from the store (only one goal and/or status when given)."""
    with open_store(project) as store:
        yield from store.list(goal=goal, status=status)


def export_readers(project: Project, out: TextIO, goal: str | None, status: str | None) -> int:
    """Write readers as CSV to `out`; how many rows were written."""
    with open_store(project) as store:
        return store.export_csv(out, goal=goal, status=status)
