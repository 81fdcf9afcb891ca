"""`runletter preview`: every goal's edition of each post in the browser, rebuilt as you edit
(the click wiring and printing; the preview itself is `publisher/preview/`)."""

from __future__ import annotations

from pathlib import Path

import click

from publisher.cli.console import summarize
from publisher.config import CONFIG_NAME, find_root
from publisher.preview.server import PreviewServer


@click.command("preview")
@click.option("--port", default=8100, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; keep the default unless you know why.")
@click.option("--reader", metavar="EMAIL", help="Fill merge fields with this reader's values "
              "(first name, links); the page can switch readers too.")
def preview_command(port: int, host: str, reader: str | None) -> None:
    """Preview every goal's edition of each post in the browser, rebuilt as you edit."""
    root = find_root(Path.cwd())
    server = PreviewServer(root, host=host, port=port, reader=reader,
                           log=lambda message: click.echo(f"preview: {message}", err=True))
    workspace = server.workspace
    if workspace.problems:
        summarize(workspace.problems)
    if reader:
        note = workspace.readers(reader)[2]
        if note:
            click.echo(f"preview: {note}", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"preview: warning: listening on {host}, so other machines can see your "
                   "drafts and reader names", err=True)
    server.start()
    click.echo(f"Previewing {workspace.config.name if workspace.config else root.name} at "
               f"{server.url}  (watching content/, layouts/, {CONFIG_NAME} and the goals file; "
               "Ctrl+C to stop)")
    try:
        while not server.wait_stopped(0.5):
            pass
    except KeyboardInterrupt:
        click.echo("\nstopping the preview")
    finally:
        server.stop()
