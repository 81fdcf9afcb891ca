"""The `runletter` command: each verb parses its options, calls its service in
`publisher.commands` (which returns data) and prints, in the voice of `console`.

One module per group of verbs, each loaded only when one of its verbs runs (so `build`
never imports the sending or serving code):

    writing   build, render, check, new, init, layouts
    readers   subscribers (import, add, remove, list, export, unbounce), audience
    sending   publish (a post, a test copy, --due), due, report
    db        db upgrade, status, copy
    preview   preview
    serve     serve (and `python -m publisher.serve`)
"""

from __future__ import annotations

from pathlib import Path

import click

from publisher.cli.console import VoicedGroup
from publisher.project import Project, open_project

# Every verb, by name: "module:attribute" of its click command, imported when used
# (click's LazyGroup pattern), so a verb costs only its own group's imports.
LAZY_COMMANDS = {
    "audience": "publisher.cli.readers:audience",
    "build": "publisher.cli.writing:build",
    "check": "publisher.cli.writing:check",
    "db": "publisher.cli.db:db_command",
    "due": "publisher.cli.sending:due_command",
    "init": "publisher.cli.writing:init",
    "layouts": "publisher.cli.writing:layouts",
    "new": "publisher.cli.writing:new",
    "preview": "publisher.cli.preview:preview_command",
    "publish": "publisher.cli.sending:publish",
    "render": "publisher.cli.writing:render",
    "report": "publisher.cli.sending:report_command",
    "serve": "publisher.cli.serve:serve_command",
    "subscribers": "publisher.cli.readers:subscribers",
}


class Runletter(VoicedGroup):
    """`runletter`: every verb in the CLI's voice, each loaded only when used."""

    lazy = LAZY_COMMANDS


def project_here() -> Project:
    """The project at or above the current folder (every verb works on the one it is in)."""
    return open_project(Path.cwd())


@click.group(cls=Runletter, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runletter")
def main() -> None:
    """Runletter: newsletter-as-code for running coaches.

    Markdown posts and an exercise catalogue in; one email edition per runner goal,
    a web archive and feeds out.
    """


if __name__ == "__main__":  # pragma: no cover
    main()
