"""Publish a post to N readers through the Postmark contract server on loopback.

Run by hand: `python bench/publish.py [--readers N [N ...]] [--store URL]` (default 100,000
then 10,000, to show memory does not grow with the list; the store defaults to a SQLite file
in a throwaway copy of the sample, `--store postgresql://user@host:port/db` uses that
database, emptied before each run). Prints wall time, requests made, peak RSS of the
publisher process (VmHWM of the process itself, read while it runs), and the ratio to the
bare floor: the same number of pre-built batch bodies POSTed in a plain loop to a second
server in the same run.
Targets: <= 60 s for 100,000 readers, <= 200 requests, <= 150 MB peak RSS, 100k and 10k
within 20 MB of each other, <= 1.3x the floor; 1,000,000 readers in <= 10 min with <= 200 MB,
within 30 MB of 100k.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _sample import arguments, copy_sample, machine, run_watched  # noqa: E402

from publisher.delivery.address import Addresser  # noqa: E402
from publisher.delivery.providers.base import Batch, provider_settings  # noqa: E402
from publisher.delivery.providers.postmark.sending import PostmarkProvider  # noqa: E402
from publisher.delivery.tokens import Signer  # noqa: E402
from publisher.project import open_project  # noqa: E402
from publisher.render.email import EmailRenderer  # noqa: E402
from publisher.store import Store, now  # noqa: E402
from tests.contract.server import stats_of  # noqa: E402

POST = "2026-11-24-hip-drive"
GOALS = ["5k", "10k", "half", "marathon", "ultra", "comeback"]
NAMES = ["Ana", "Ben", "Chloé", "Dev", "Emeka", "Fatima", "Gus", "Hana", "Ivo", "Jo"]
TOKEN = "test-token"
SECRET = "bench-secret-0123456789abcdef"


def fill_store(url: str, readers: int) -> None:
    """N active readers over six goals, in one transaction, into an emptied store."""
    from publisher.store.tables import COPY_ORDER

    stamp = now()
    with Store.open(url) as store, store.transaction() as conn:
        for table in reversed(COPY_ORDER):
            conn.execute(f"DELETE FROM {table.name}")
        conn.executemany(
            "INSERT INTO subscribers(email, first_name, goal, tags, status, consent_source, "
            "consent_at, created_at, updated_at) VALUES (:email, :first_name, :goal, '', "
            "'active', 'bench', :consent_at, :created_at, :updated_at)",
            (
                {
                    "email": f"reader{i:06d}@example.com",
                    "first_name": NAMES[i % len(NAMES)],
                    "goal": GOALS[i % len(GOALS)],
                    "consent_at": stamp,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
                for i in range(readers)
            ),
        )


def start_server() -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([sys.executable, "-m", "tests.contract", "postmark", "--count-only",
                              "--token", TOKEN], cwd=HERE.parent, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    return child, child.stdout.readline().strip()


def publish(root: Path, url: str, store: str) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of one `runletter publish` process."""
    env = {**os.environ, "RUNLETTER_POSTMARK_BASE_URL": url, "RUNLETTER_DATABASE_URL": store,
           "RUNLETTER_POSTMARK_SERVER_TOKEN": TOKEN, "RUNLETTER_SECRET": SECRET}
    status, output, wall, peak = run_watched(
        [sys.executable, "-m", "publisher.cli", "publish", POST, "--yes", "--provider",
         "postmark"], root, env)
    if status:
        raise SystemExit(f"publish failed:\n{output}")
    return wall, peak, output


def floor(root: Path, url: str, requests_made: int) -> float:
    """Seconds to POST the same number of pre-built 500-message bodies in a plain loop."""
    project = open_project(root)
    config = project.config
    resolved = project.resolve(project.post(POST))
    renderer = EmailRenderer(config)
    edition = renderer.edition(renderer.prepare(resolved), project.goals.get("marathon"))
    addresser = Addresser(config, Signer(SECRET))
    settings = provider_settings(PostmarkProvider, config, environ={
        "RUNLETTER_POSTMARK_BASE_URL": url, "RUNLETTER_POSTMARK_SERVER_TOKEN": TOKEN})
    provider = PostmarkProvider(config, addresser, settings)
    recipients = tuple(addresser.recipient(POST, i, f"floor{i}@example.com", "Ana")
                       for i in range(provider.max_batch))
    batch = Batch(edition, addresser.compile(edition), recipients)
    [call] = list(provider._calls([(provider._message_json(edition), batch)], []))  # noqa: SLF001
    body = b"[" + b",".join(b"".join(message) for _, message in call) + b"]"
    headers = {"X-Postmark-Server-Token": TOKEN, "Content-Type": "application/json",
               "Accept": "application/json"}
    with requests.Session() as session:
        start = time.perf_counter()
        for _ in range(requests_made):
            session.post(url + "/email/batch", data=body, headers=headers, timeout=60
                         ).raise_for_status()
        return time.perf_counter() - start


def run(readers: int, store: str | None) -> dict[str, float]:
    root = copy_sample()
    store = store or f"sqlite:///{root / 'subscribers/runletter.db'}"
    fill_store(store, readers)
    server, url = start_server()
    floor_server, floor_url = start_server()
    try:
        wall, rss, output = publish(root, url, store)
        stats = stats_of(url)
        floor_s = floor(root, floor_url, stats["requests"])
    finally:
        for child in (server, floor_server):
            child.terminate()
            child.wait(timeout=10)
    return {"readers": readers, "wall": wall, "rss": rss, "requests": stats["requests"],
            "delivered": stats["delivered"], "max_batch": stats["max_recipients_per_request"],
            "floor": floor_s, "output": output}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--readers", type=int, nargs="+", default=[100_000, 10_000],
                        metavar="N", help="readers to publish to, one run each (default: "
                        "100,000 then 10,000, for memory)")
    parser.add_argument("--store", metavar="URL", help="the store (default: a SQLite file "
                        "in the throwaway copy); a PostgreSQL database is emptied first")
    args = parser.parse_args()
    sizes = args.readers
    print(f"machine: {machine()}; store: {args.store or 'SQLite file'}")
    results = [run(n, args.store) for n in sizes]
    for r in results:
        print(f"{r['readers']:>7} readers: {r['wall']:6.1f} s wall, {r['requests']:.0f} requests "
              f"(at most {r['max_batch']:.0f} messages each), {r['delivered']:.0f} delivered, "
              f"peak RSS {r['rss']:.0f} MB, floor {r['floor']:.1f} s, "
              f"{r['wall'] / r['floor']:.2f}x the floor")
    if len(results) > 1:
        spread = max(r["rss"] for r in results) - min(r["rss"] for r in results)
        print(f"peak RSS spread across sizes: {spread:.0f} MB (targets: 100k vs 10k within "
              "20 MB, 1M vs 100k within 30 MB)")
    print("targets: <= 60 s for 100,000 readers, <= 200 requests, <= 150 MB, <= 1.3x the floor")


if __name__ == "__main__":
    main()
