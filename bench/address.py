"""Time to build one recipient's message bytes, against the naive way.

Run by hand: `python bench/address.py [--messages N] [--naive N]`. The fast path fills an
edition's slots and headers around bytes encoded once per edition; the naive path renders
the edition and builds a stdlib EmailMessage for every recipient.
Targets: <= 50 us per message, >= 50x faster.
"""

from __future__ import annotations

import email.policy
import email.utils
import sys
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sample import REPO, arguments, machine  # noqa: E402

from publisher.delivery.address import Addresser  # noqa: E402
from publisher.delivery.tokens import Signer  # noqa: E402
from publisher.project import open_project  # noqa: E402
from publisher.render.email import EmailRenderer  # noqa: E402

N_FAST = 20_000
N_NAIVE = 200


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--messages", type=int, default=N_FAST, metavar="N",
                        help=f"messages built the fast way (default: {N_FAST:,})")
    parser.add_argument("--naive", type=int, default=N_NAIVE, metavar="N",
                        help=f"messages built the naive way (default: {N_NAIVE})")
    args = parser.parse_args()
    n_fast, n_naive = args.messages, args.naive
    project = open_project(REPO)
    config = project.config
    resolved = project.resolve(project.post("2026-11-24-hip-drive"))
    renderer = EmailRenderer(config)
    goal = project.goals.get("marathon")
    edition = renderer.edition(renderer.prepare(resolved), goal)
    addresser = Addresser(config, Signer("bench-secret-0123456789abcdef"))
    compiled = addresser.compile(edition)
    names = ["Zoë", "Ana", "D'Arcy", "Björn", "Lee"]

    start = time.perf_counter()
    recipients = [addresser.recipient(resolved.slug, i, f"reader{i}@example.com",
                                      names[i % 5]) for i in range(n_fast)]
    values_us = (time.perf_counter() - start) / n_fast * 1e6

    date = email.utils.formatdate()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for r in recipients:
            addresser.message(compiled, r, date)
        best = min(best, (time.perf_counter() - start) / n_fast)
    fast_us = best * 1e6
    size = len(addresser.message(compiled, recipients[0], date).data)

    start = time.perf_counter()
    for r in recipients[:n_naive]:
        prepared = renderer.prepare(resolved)
        ed = renderer.edition(prepared, goal)
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = email.utils.formataddr((config.sender_name, config.sender_email))
        message["To"] = email.utils.formataddr((r.first_name, r.email))
        message["Subject"] = ed.subject
        message["Date"] = date
        message["Message-ID"] = r.message_id
        message["List-Unsubscribe"] = (f"<{r.values['unsubscribe_url']}>, "
                                       f"<{r.values['unsubscribe_mailto']}>")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(ed.text(r.values))
        message.add_alternative(ed.html(r.values), subtype="html")
        message.as_bytes()
    naive_us = (time.perf_counter() - start) / n_naive * 1e6

    print(f"machine: {machine()}")
    print(f"edition: {resolved.slug} ({goal.slug}), message {size // 1024} KB")
    print(f"merge values per recipient (2 signed tokens): {values_us:8.1f} us")
    print(f"message bytes per recipient (fast path):      {fast_us:8.1f} us   target <= 50 us")
    print(f"naive: render + EmailMessage per recipient:   {naive_us:8.1f} us")
    print(f"fast path is {naive_us / fast_us:.0f}x faster (target >= 50x); "
          f"with token signing {naive_us / (fast_us + values_us):.0f}x")


if __name__ == "__main__":
    main()
