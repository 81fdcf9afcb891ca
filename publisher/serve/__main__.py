"""`python -m publisher.serve`: `runletter serve`, with errors printed the CLI's way."""

from .server import main

main()
