"""The app under gunicorn for `runletter serve` (started in-process through gunicorn's
BaseApplication: no `gunicorn` command line, no config file); the click command is
`publisher/cli/serve.py`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from publisher.config import Config
from publisher.delivery.providers import provider_class
from publisher.delivery.providers.base import Provider, unknown_env_settings
from publisher.delivery.tokens import SECRET_ENV, load_secret
from publisher.errors import RunletterError
from publisher.project import open_project
from publisher.serve.app import create_app

THREADS = 4                       # gunicorn gthread threads per worker process


def gunicorn_options(host: str, port: int, workers: int) -> dict[str, Any]:
    """gunicorn settings: threaded workers, no access log (paths carry tokens)."""
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": THREADS,
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "runletter-serve",
        "limit_request_line": 4094,
        "limit_request_fields": 60,
        "control_socket_disable": True,  # gunicorn >= 25 only; skipped where unknown
    }


def run_server(app, options: Mapping[str, Any]) -> None:
    """Run the app under gunicorn until SIGINT/SIGTERM."""
    from gunicorn.app.base import BaseApplication  # why: only a running server needs gunicorn

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings and value is not None:
                    self.cfg.set(key, value)

        def load(self):
            return app

    Server().run()


def prepare(host: str | None, port: int | None, workers: int | None,
            start: Path | None = None) -> tuple[Any, dict[str, Any], Callable[[], None]]:
    """Load the project and build the app; return it, gunicorn's options and a banner."""
    project = open_project(start or Path.cwd())
    config = project.config
    cls = provider_class(config.delivery.provider)
    _warn(config, cls)
    if cls.needs_secret_env and not os.environ.get(SECRET_ENV):
        raise RunletterError(f"{SECRET_ENV} is not set: with the '{cls.name}' provider, reader "
                             "links must be signed with the same secret 'runletter publish' "
                             "uses; set it in the environment")
    secret, told = load_secret(config.root, create=True)
    if told:
        click.echo(f"note: {told}", err=True)
    assert secret is not None
    app = create_app(config, project.goals, secret)
    host = host or config.serve.host
    port = port if port is not None else config.serve.port
    workers = workers or config.serve.workers
    if workers < 1 or not 0 < port < 65536:
        raise RunletterError("serve: workers must be at least 1 and port between 1 and 65535")

    def banner() -> None:
        click.echo(f"runletter serve: http://{host}:{port} ({workers} workers x {THREADS} "
                   f"threads, provider {cls.name}); links point at {config.base_url}",
                   err=True)

    return app, gunicorn_options(host, port, workers), banner


def _warn(config: Config, cls: type[Provider]) -> None:
    """Settings in their old places, and environment variables that name no setting."""
    for moved in config.moved:
        click.echo(f"warning: {moved.warning}", err=True)
    for warning in unknown_env_settings(cls):
        click.echo(f"warning: {warning}", err=True)
