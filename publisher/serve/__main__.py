"""`python -m publisher.serve`: `runletter serve`, with errors printed the CLI's way."""

from publisher.cli.serve import main

main()
