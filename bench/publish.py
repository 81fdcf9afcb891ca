"""Publish a post to N readers through the Postmark contract server on loopback.

Run by hand: `python bench/publish.py [--readers N]` (default 100,000; also runs 10,000 to
show memory does not grow with the list). Prints wall time, requests made, peak RSS of the
publisher process, and the ratio to the bare floor: the same number of pre-built batch
bodies POSTed in a plain loop to a second server in the same run.
Targets: <= 60 s for 100,000 readers, <= 200 requests, <= 150 MB peak RSS, 100k and 10k
within 20 MB of each other, <= 1.3x the floor.
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
from _sample import arguments, copy_sample, machine  # noqa: E402

from publisher.address import Addresser  # noqa: E402
from publisher.project import open_project  # noqa: E402
from publisher.providers.base import Batch, provider_settings  # noqa: E402
from publisher.providers.postmark import PostmarkProvider  # noqa: E402
from publisher.render import EmailRenderer  # noqa: E402
from publisher.store import Store, now  # noqa: E402
from publisher.tokens import Signer  # noqa: E402
from tests.contract.server import stats_of  # noqa: E402

POST = "2026-11-24-hip-drive"
GOALS = ["5k", "10k", "half", "marathon", "ultra", "comeback"]
NAMES = ["Ana", "Ben", "Chloé", "Dev", "Emeka", "Fatima", "Gus", "Hana", "Ivo", "Jo"]
TOKEN = "test-token"
SECRET = "bench-secret-0123456789abcdef"


def fill_store(root: Path, readers: int) -> None:
    """N active readers over six goals, in one transaction."""
    stamp = now()
    with Store.open(root / "subscribers/runletter.db") as store, store.transaction() as conn:
        conn.executemany(
            "INSERT INTO subscribers(email, first_name, goal, tags, status, consent_source, "
            "consent_at, created_at, updated_at) VALUES (?, ?, ?, '', 'active', 'bench', ?, ?, ?)",
            ((f"reader{i:06d}@example.com", NAMES[i % len(NAMES)], GOALS[i % len(GOALS)],
              stamp, stamp, stamp) for i in range(readers)))


def start_server() -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([sys.executable, "-m", "tests.contract", "postmark", "--count-only",
                              "--token", TOKEN], cwd=HERE.parent, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    return child, child.stdout.readline().strip()


def publish(root: Path, url: str) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of one `runletter publish` process."""
    env = {**os.environ, "RUNLETTER_POSTMARK_BASE_URL": url,
           "RUNLETTER_POSTMARK_SERVER_TOKEN": TOKEN, "RUNLETTER_SECRET": SECRET}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "publisher.cli", "publish", POST, "--yes",
                              "--provider", "postmark"], cwd=root, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status:
        raise SystemExit(f"publish failed:\n{output}")
    return wall, usage.ru_maxrss / 1024, output


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
    [call] = list(provider._calls([(provider._template(edition), batch)], []))  # noqa: SLF001
    body = b"[" + b",".join(b"".join(message) for _, message in call) + b"]"
    headers = {"X-Postmark-Server-Token": TOKEN, "Content-Type": "application/json",
               "Accept": "application/json"}
    with requests.Session() as session:
        start = time.perf_counter()
        for _ in range(requests_made):
            session.post(url + "/email/batch", data=body, headers=headers, timeout=60
                         ).raise_for_status()
        return time.perf_counter() - start


def run(readers: int) -> dict[str, float]:
    root = copy_sample()
    fill_store(root, readers)
    server, url = start_server()
    floor_server, floor_url = start_server()
    try:
        wall, rss, output = publish(root, url)
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
    parser.add_argument("--readers", type=int, default=100_000, metavar="N",
                        help="readers to publish to (default: 100,000, then 10,000 for memory)")
    args = parser.parse_args()
    sizes = [args.readers] + ([10_000] if args.readers == 100_000 else [])
    print(f"machine: {machine()}")
    results = [run(n) for n in sizes]
    for r in results:
        print(f"{r['readers']:>7} readers: {r['wall']:6.1f} s wall, {r['requests']:.0f} requests "
              f"(at most {r['max_batch']:.0f} messages each), {r['delivered']:.0f} delivered, "
              f"peak RSS {r['rss']:.0f} MB, floor {r['floor']:.1f} s, "
              f"{r['wall'] / r['floor']:.2f}x the floor")
    if len(results) == 2:
        print(f"peak RSS 100k - 10k: {results[0]['rss'] - results[1]['rss']:.0f} MB "
              "(target within 20 MB)")
    print("targets: <= 60 s for 100,000 readers, <= 200 requests, <= 150 MB, <= 1.3x the floor")


if __name__ == "__main__":
    main()
