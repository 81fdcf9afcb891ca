"""`runletter subscribers unbounce EMAIL`: an author's undo of a bounce recorded by mistake
(the click wiring; the services are in `commands/subscribers.py`)."""

from __future__ import annotations

from pathlib import Path

import click

from publisher.commands.subscribers import bounced_reader, unbounce_reader
from publisher.project import open_project


@click.command("unbounce")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def unbounce_command(email: str, yes: bool) -> None:
    """Make a bounced reader active again, when the bounce was recorded by mistake (audited;
    never for an unsubscribed or complained reader)."""
    project = open_project(Path.cwd())
    reader, why = bounced_reader(project, email)
    if not yes:
        # A wrong undo mails a dead address on every publish and hurts the sender's
        # reputation, so the author sees what the bounce said first.
        click.confirm(f"{reader.email} bounced ({why or 'no reason recorded'}). Make them "
                      "active again, so every publish sends to them?", abort=True)
    changed = unbounce_reader(project, reader.email)
    click.echo(f"{changed.email} is active again (was bounced)")
