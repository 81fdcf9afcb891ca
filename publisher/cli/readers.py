"""The readers' verbs: `subscribers` (import, add, remove, list, export, unbounce) and
`audience` (the click wiring and printing; the services are in `commands/subscribers.py`
and `commands/audience.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from publisher.cli import project_here
from publisher.cli.console import summarize, table
from publisher.commands.audience import audience as count_audience
from publisher.commands.subscribers import (
    add_reader,
    bounced_reader,
    export_readers,
    import_readers,
    list_readers,
    remove_reader,
    unbounce_reader,
)
from publisher.store import STATUSES


@click.group("subscribers")
def subscribers() -> None:
    """Manage readers: import, add, remove, list, export, unbounce."""


@subscribers.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--from", "source", default="auto", show_default=True, metavar="FORMAT",
              help="Which tool wrote the file: runletter, mailchimp, substack, ghost, "
              "listmonk, buttondown or kit; auto reads it from the header.")
@click.option("--status", type=click.Choice(STATUSES),
              help="Status of rows with none of their own (e.g. bounced for a suppression "
              "list); it never makes a row more permissive than its file says.")
@click.option("--goal", help="Goal (slug or label) of rows without one (default: general).")
@click.option("--map", "maps", multiple=True, metavar='"COLUMN=field"',
              help="Read COLUMN as email, first_name, name (first word kept), goal, tags, "
              "status, race_date, race_name or timezone; repeatable.")
@click.option("--dry-run", is_flag=True, help="Show the format, the column mapping and the "
              "counts per status and goal, with every row error; write nothing.")
@click.option("--enrol", is_flag=True, help="Enrol them in signup sequences from now on.")
def subscribers_import(csv_file: Path, source: str, status: str | None, goal: str | None,
                       maps: tuple[str, ...], dry_run: bool, enrol: bool) -> None:
    """Import readers from a CSV export (Runletter's own, or Mailchimp, Substack, Ghost,
    listmonk, Buttondown or Kit) in one transaction."""
    result = import_readers(project_here(), csv_file, source, status, goal, maps, dry_run, enrol)
    click.echo(result.format_line())
    if dry_run:
        for line in ["columns:", *result.mapping_lines(), *result.count_lines()]:
            click.echo(line)
    if result.findings:
        summarize(result.findings)
    if line := result.enrol_line():
        click.echo(line)
    click.echo(result.summary(str(csv_file)))
    if result.skipped:
        sys.exit(1)


@subscribers.command("add")
@click.argument("email")
@click.option("--goal", default="general", show_default=True, help="The reader's goal.")
@click.option("--name", "first_name", default="", help="First name, for the greeting.")
@click.option("--tags", default="", help="Tags, separated by ';'.")
@click.option("--race-date", help="Date of the reader's race, YYYY-MM-DD.")
@click.option("--race-name", default="", help="Name of the reader's race.")
@click.option("--timezone", default="", help="IANA time zone, e.g. Europe/Madrid (default: "
              "[schedule] timezone).")
def subscribers_add(email: str, goal: str, first_name: str, tags: str, **race: str) -> None:
    """Add one active reader (consent source: cli)."""
    reader = add_reader(project_here(), email, goal, first_name, tags, **race)
    click.echo(f"added {reader.email} ({reader.goal})")


@subscribers.command("remove")
@click.argument("email")
def subscribers_remove(email: str) -> None:
    """Delete a reader and their delivery history (the audit trail keeps the removal)."""
    remove_reader(project_here(), email)
    click.echo(f"removed {email}")


@subscribers.command("list")
@click.option("--goal", help="Only this goal.")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
def subscribers_list(goal: str | None, status: str | None) -> None:
    """List readers, one per line: email, goal, status, name."""
    for reader in list_readers(project_here(), goal, status):
        click.echo(f"{reader.email}\t{reader.goal}\t{reader.status}\t{reader.first_name}")


@subscribers.command("export")
@click.option("--goal", help="Only this goal.")
@click.option("--status", help="Only this status.")
def subscribers_export(goal: str | None, status: str | None) -> None:
    """Write readers as CSV to stdout."""
    export_readers(project_here(), sys.stdout, goal, status)


@subscribers.command("unbounce")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def unbounce_command(email: str, yes: bool) -> None:
    """Make a bounced reader active again, when the bounce was recorded by mistake (audited;
    never for an unsubscribed or complained reader)."""
    project = project_here()
    reader, why = bounced_reader(project, email)
    if not yes:
        # A wrong undo mails a dead address on every publish and hurts the sender's
        # reputation, so the author sees what the bounce said first.
        click.confirm(f"{reader.email} bounced ({why or 'no reason recorded'}). Make them "
                      "active again, so every publish sends to them?", abort=True)
    changed = unbounce_reader(project, reader.email)
    click.echo(f"{changed.email} is active again (was bounced)")


@click.command("audience")
def audience() -> None:
    """Count active readers per goal."""
    counted = count_audience(project_here())
    rows = [["segment", "active readers"], *([slug, str(n)] for slug, n in counted.segments)]
    rows += [[f"{slug} (not in goals.toml)", str(n)] for slug, n in counted.unlisted]
    table([*rows, ["total", str(counted.total)]])
