"""The CLI's verb groups: every verb in the registry resolves to its click command, and a
verb loads only its own group (so `runletter build` never imports the sending or serving
code)."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from publisher.cli import LAZY_COMMANDS, main

# What a writing verb must not pull in: the other groups, the servers, the sending path.
NOT_FOR_BUILD = ("publisher.cli.sending", "publisher.cli.readers", "publisher.cli.serve",
                 "publisher.cli.preview", "publisher.serve", "publisher.preview",
                 "publisher.delivery.send", "publisher.commands.publish", "flask")


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_every_registered_verb_resolves_to_its_command(name):
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    assert command.name == name


def test_the_group_lists_exactly_the_registered_verbs():
    assert main.list_commands(click.Context(main)) == sorted(LAZY_COMMANDS)


def test_a_writing_verb_loads_only_its_own_group():
    probe = ("import sys\n"
             "from publisher.cli import main\n"
             "main.get_command(None, 'build')\n"
             f"print(sorted(m for m in {NOT_FOR_BUILD!r} if m in sys.modules))\n")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"
