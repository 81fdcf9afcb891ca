"""Messages per second over one reused SMTP connection versus one connection per message.

Run by hand: `python bench/smtp.py [--messages N]`. Each server runs in its own process on
127.0.0.1 with STARTTLS and AUTH, as any real relay requires, so a new connection pays what
it pays in life: TCP, EHLO, TLS handshake, login. Two servers: aiosmtpd (the one the tests
use; it parses DATA line by line in Python, ~6 ms for a 47 KB message, which caps both
columns) and a lean sink that reads DATA in one call, the way Postfix-class servers cost
next to nothing per message. Target: >= 5x.
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
from _sample import REPO, arguments, machine  # noqa: E402

from publisher.delivery.address import Addresser  # noqa: E402
from publisher.delivery.providers.base import Batch, provider_settings  # noqa: E402
from publisher.delivery.providers.smtp import SmtpProvider  # noqa: E402
from publisher.delivery.tokens import Signer  # noqa: E402
from publisher.project import open_project  # noqa: E402
from publisher.render.email import EmailRenderer  # noqa: E402
from tests.helpers.smtp_server import running_smtp  # noqa: E402


def serve() -> None:
    """Child process: run aiosmtpd until stdin closes; print port and CA file first."""
    import warnings

    warnings.simplefilter("ignore")  # aiosmtpd's own deprecation notices, not ours
    with running_smtp(auth=("bench", "secret"), starttls=True) as server:
        print(json.dumps({"port": server.port, "cafile": server.cafile}), flush=True)
        sys.stdin.read()


def serve_sink() -> None:
    """Child process: a minimal ESMTP sink with STARTTLS and AUTH PLAIN, DATA read whole."""
    import asyncio
    import tempfile

    import trustme

    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    cafile = Path(tempfile.mkdtemp()) / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        tls = False
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                offer = b"250-sink\r\n250-AUTH PLAIN\r\n" if tls else b"250-sink\r\n"
                writer.write(offer + (b"250 STARTTLS\r\n" if not tls else b"250 8BITMIME\r\n"))
            elif verb == b"STAR":
                writer.write(b"220 go ahead\r\n")
                await writer.drain()
                await writer.start_tls(context)
                tls = True
            elif verb == b"AUTH":
                writer.write(b"235 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go\r\n")
                await writer.drain()
                await reader.readuntil(b"\r\n.\r\n")
                writer.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:  # MAIL, RCPT, RSET, NOOP
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    async def main_loop() -> None:
        server = await asyncio.start_server(session, "127.0.0.1", 0, limit=2**22)
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port, "cafile": str(cafile)}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main_loop())


def measure(kind: str, n: int) -> tuple[float, float, int]:
    """(reused, fresh) messages per second against one server process, and message size."""
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
    child = subprocess.Popen([sys.executable, __file__, "--serve", kind],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)  # aiosmtpd is chatty
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
    return reused, fresh, len(data)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--messages", type=int, default=500, metavar="N",
                        help="messages sent each way, to each server (default: 500)")
    parser.add_argument("--serve", choices=["aiosmtpd", "sink"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "aiosmtpd":
        return serve()
    if args.serve == "sink":
        return serve_sink()
    print(f"machine: {machine()}")
    for kind in ("sink", "aiosmtpd"):
        reused, fresh, size = measure(kind, args.messages)
        print(f"{kind:>8}: {args.messages} messages of {size // 1024} KB, STARTTLS + AUTH: "
              f"reused connection {reused:6.0f}/s, a connection per message {fresh:5.0f}/s, "
              f"reuse {reused / fresh:.1f}x faster (target >= 5x)")


if __name__ == "__main__":
    main()
