"""Messages per second over one reused SMTP connection versus one connection per message.

Run by hand: `python bench/smtp.py [--messages N]`. The server is aiosmtpd on 127.0.0.1 (the
one the tests use) in its own process, with STARTTLS and AUTH as any real relay requires, so
a new connection pays what it pays in life: TCP, EHLO, TLS handshake, login. Target: >= 5x.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _sample import REPO, machine  # noqa: E402

from publisher.address import Addresser  # noqa: E402
from publisher.project import open_project  # noqa: E402
from publisher.providers.base import Batch, provider_settings  # noqa: E402
from publisher.providers.smtp import SmtpProvider  # noqa: E402
from publisher.render import EmailRenderer  # noqa: E402
from publisher.tokens import Signer  # noqa: E402
from tests.smtp_server import running_smtp  # noqa: E402


def serve() -> None:
    """Child process: run the server until stdin closes; print port and CA file first."""
    import warnings

    warnings.simplefilter("ignore")  # aiosmtpd's own deprecation notices, not ours
    with running_smtp(auth=("bench", "secret"), starttls=True) as server:
        print(json.dumps({"port": server.port, "cafile": server.cafile}), flush=True)
        sys.stdin.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve()
    n = args.messages
    project = open_project(REPO)
    config = project.config
    resolved = project.resolve(project.post("2026-11-24-hip-drive"))
    renderer = EmailRenderer(config)
    edition = renderer.edition(renderer.prepare(resolved), project.goals.get("marathon"))
    addresser = Addresser(config, Signer("bench-secret-0123456789abcdef"))
    compiled = addresser.compile(edition)
    recipients = tuple(addresser.recipient(resolved.slug, i, f"r{i}@example.com", "Ana")
                       for i in range(n))
    date = email.utils.formatdate()
    data = b""

    child = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(child.stdout.readline())
        env = {"RUNLETTER_SMTP_HOST": "127.0.0.1", "RUNLETTER_SMTP_PORT": str(info["port"]),
               "RUNLETTER_SMTP_SECURITY": "starttls", "RUNLETTER_SMTP_USERNAME": "bench",
               "RUNLETTER_SMTP_PASSWORD": "secret", "RUNLETTER_SMTP_CAFILE": info["cafile"]}
        settings = provider_settings(SmtpProvider, config, environ=env)
        start = time.perf_counter()
        with SmtpProvider(config, addresser, settings) as provider:
            for i in range(0, n, provider.max_batch):
                provider.send(Batch(edition, compiled, recipients[i:i + provider.max_batch]))
        reused = n / (time.perf_counter() - start)

        context = ssl.create_default_context(cafile=info["cafile"])
        start = time.perf_counter()
        for r in recipients:
            data = addresser.message(compiled, r, date).data
            with smtplib.SMTP("127.0.0.1", info["port"], timeout=10) as connection:
                connection.starttls(context=context)
                connection.login("bench", "secret")
                connection.sendmail(config.sender_email, [r.email], data)
        fresh = n / (time.perf_counter() - start)
    finally:
        child.stdin.close()
        child.wait(timeout=10)

    print(f"machine: {machine()}")
    print(f"{n} messages of {len(data) // 1024} KB to aiosmtpd on 127.0.0.1 (STARTTLS + AUTH), "
          "server in its own process")
    print(f"one reused connection:        {reused:8.0f} messages/s")
    print(f"one connection per message:   {fresh:8.0f} messages/s")
    print(f"reuse is {reused / fresh:.1f}x faster (target >= 5x)")


if __name__ == "__main__":
    main()
