"""`python -m publisher.cli`: the `runletter` command."""

from publisher.cli import main

main()
