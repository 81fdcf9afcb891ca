"""`python -m publisher.serve`: `runletter serve`, with errors printed the CLI's way."""

from publisher.serve.server import main

main()
