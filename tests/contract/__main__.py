"""Run one contract server in the foreground, for a benchmark in another process.

    python -m tests.contract postmark|mailgun|sendgrid [--port N] [--count-only]
        [--token T] [--domain D]

The first line on stdout is the server's base URL (flushed at once). GET
<url>/_contract/stats answers {"requests", "delivered", "max_recipients_per_request"}.
SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tests.contract.server import PROVIDERS, running


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.contract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("provider", choices=sorted(PROVIDERS))
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--count-only", action="store_true",
                        help="keep counts only, not the delivered copies (for big runs)")
    parser.add_argument("--token", help="the token / API key to accept (default: the "
                                        "provider's test default)")
    parser.add_argument("--domain", help="mailgun sending domain (default mg.example.org)")
    args = parser.parse_args(argv)

    options: dict[str, object] = {"port": args.port, "count_only": args.count_only}
    if args.token is not None:
        options["token"] = args.token
    if args.domain is not None:
        if args.provider != "mailgun":
            parser.error("--domain is for mailgun only")
        options["domain"] = args.domain

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with running(args.provider, **options) as server:
        print(server.url, flush=True)
        print(f"{args.provider} contract server on {server.url}, key {server.key!r}",
              file=sys.stderr, flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
