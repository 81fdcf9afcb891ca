"""`runletter serve` and `python -m publisher.serve`: the click wiring of the reader-facing
server (the app and gunicorn are in `publisher/serve/`)."""

from __future__ import annotations

import sys

import click

from publisher.errors import RunletterError
from publisher.serve.server import prepare, run_server


@click.command("serve")
@click.option("--host", help="Address to listen on (default: [serve] host, 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default: [serve] port, 8000).")
@click.option("--workers", type=int, help="Worker processes (default: [serve] workers).")
def serve_command(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve signup, confirm, unsubscribe, preferences and provider webhooks."""
    app, options, banner = prepare(host, port, workers)
    banner()
    run_server(app, options)


def main(argv: list[str] | None = None) -> None:
    """`python -m publisher.serve`: the command, with errors printed the CLI's way."""
    try:
        serve_command.main(args=argv, prog_name="runletter serve", standalone_mode=False)
    except RunletterError as exc:
        for finding in exc.findings:
            click.echo(f"{finding}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
