"""`runletter db upgrade | status | copy`: the click wiring and printing (the services are
in `commands/db.py`)."""

from __future__ import annotations

import sys

import click

from publisher.cli.console import plural, table
from publisher.commands.db import copy, project_url, status, upgrade


@click.group("db")
def db_command() -> None:
    """The subscriber store: bring its schema up to date, describe it, copy it."""


@db_command.command("upgrade")
def upgrade_command() -> None:
    """Bring the project's store to this runletter's schema (made if there is none)."""
    done = upgrade(project_url())
    if not done.before:
        click.echo(f"store {done.store}: made at schema {done.after}")
    elif done.before == done.after:
        click.echo(f"store {done.store}: schema {done.after} (up to date)")
    else:
        click.echo(f"store {done.store}: schema {done.before} -> {done.after}")
    for merge in done.merged:
        click.echo(f"merged {merge.readers} readers into {merge.email} (kept: {merge.status})")


@db_command.command("status")
def status_command() -> None:
    """Show the project's store (password hidden), its schema version and rows per table."""
    found = status(project_url())
    click.echo(f"store: {found.store}")
    click.echo(f"dialect: {found.dialect}")
    click.echo(f"schema: {_version_line(found.version, found.latest)}")
    if found.counts:
        table([["table", "rows"], *([name, str(n)] for name, n in found.counts.items())])


def _version_line(version: int | None, latest: int) -> str:
    if version is None:
        return "none yet ('runletter db upgrade' makes the tables)"
    if version == latest:
        return f"{version} (the latest)"
    if version < latest:
        return f"{version} (this runletter's is {latest}: run 'runletter db upgrade')"
    return f"{version} (newer than this runletter's {latest}: upgrade runletter)"


@db_command.command("copy")
@click.argument("source_url")
@click.argument("target_url")
@click.option("--force", is_flag=True, help="Replace the rows the target already holds.")
def copy_command(source_url: str, target_url: str, force: bool) -> None:
    """Copy every table of the store at SOURCE_URL into the one at TARGET_URL (SQLite or
    PostgreSQL; passwords from PGPASSWORD or ~/.pgpass), then compare the counts."""
    def progress(name: str, rows: int) -> None:
        click.echo(f"copying {name}: {plural(rows, 'row')}", err=True)

    done = copy(source_url, target_url, force, progress=progress)
    click.echo(f"copied {done.source} -> {done.target}")
    table([["table", "source", "target"],
           *([name, str(there), str(here)] for name, there, here in done.counts)])
    if done.differ:
        click.echo(f"the counts differ ({', '.join(done.differ)}): the copy is incomplete; "
                   "run it again with --force", err=True)
        sys.exit(1)
    click.echo(f"the counts match: {plural(sum(n for _, n, _ in done.counts), 'row')} copied")
