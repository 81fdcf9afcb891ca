"""`runletter layouts`: list the built-in layouts, or copy one into layouts/ to edit."""

from __future__ import annotations

from pathlib import Path

import click

from .config import Config, find_root, load_config
from .errors import display_path
from .layout_files import builtin_names, eject, overrides


def config_here() -> Config:
    """The settings of the newsletter at or above the current folder (no content loaded)."""
    return load_config(find_root(Path.cwd()))


@click.group("layouts")
def layouts_command() -> None:
    """List the built-in layouts, or copy one into layouts/ to edit.

    A file in layouts/ replaces the built-in one of the same name; a layout that starts with
    {% extends "!builtin/email/base.mjml.j2" %} overrides only the blocks it names.
    """


@layouts_command.command("list")
def list_command() -> None:
    """Every built-in layout; the ones this newsletter overrides are marked."""
    config = config_here()
    replaced = overrides(config)
    for name in builtin_names():
        mark = (f"  (overridden by {display_path(replaced[name], config.root)})"
                if name in replaced else "")
        click.echo(name + mark)


@layouts_command.command("eject")
@click.argument("name")
@click.option("--force", is_flag=True, help="Replace an existing override with the built-in.")
def eject_command(name: str, force: bool) -> None:
    """Copy the built-in layout NAME (e.g. email/partials/footer.mjml.j2) into layouts/."""
    config = config_here()
    path = eject(config, name, force)
    click.echo(f"created {display_path(path, config.root)} (a copy of the built-in, to edit)")
