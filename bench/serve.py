"""One-click unsubscribes under load: real HTTP to `runletter serve` (gunicorn) on loopback.

Run by hand: `python bench/serve.py [--readers 2000] [--clients 20] [--workers N] [--repeat 1]`.
In a throwaway copy of the sample newsletter it imports N readers, starts the server on a
free 127.0.0.1 port, sends one RFC 8058 POST (`List-Unsubscribe=One-Click`) per reader
(`--repeat 2` sends every one twice, shuffled, so duplicates race) from C threads, each with
its own requests session, and reports requests per second and latency. Then it checks the
store: every reader is unsubscribed, each has exactly one 'unsubscribed' audit row, and no
reader was lost or added. Every request has a timeout and the whole run a deadline.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sample import arguments, copy_sample  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from publisher.arrivals import ArrivalOptions, import_file  # noqa: E402
from publisher.delivery.tokens import Signer  # noqa: E402
from publisher.project import open_project  # noqa: E402
from publisher.store import Store  # noqa: E402

HOST = "127.0.0.1"
SECRET = "bench-secret-0123456789abcdef"
GOALS = ("5k", "10k", "half", "marathon", "ultra", "comeback", "general")
DEADLINE = 300.0  # seconds for the whole load phase


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def write_readers(root: Path, count: int) -> Path:
    path = root / "subscribers" / "bench.csv"
    lines = ["email,first_name,goal,tags,status"]
    lines += [f"bench{i:05d}@example.net,Runner{i},{GOALS[i % len(GOALS)]},,active"
              for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start_server(root: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "RUNLETTER_SECRET": SECRET,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    log = open(root / "serve.log", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen([sys.executable, "-m", "publisher.serve", "--host", HOST,
                             "--port", str(port), "--workers", str(workers)],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited:\n{(root / 'serve.log').read_text()}")
        try:
            if requests.get(f"http://{HOST}:{port}/healthz", timeout=1).ok:
                return proc
        except requests.RequestException:
            time.sleep(0.1)
    stop_server(proc)
    sys.exit("the server did not start in 30 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def load(urls: list[str], clients: int) -> tuple[float, list[float], dict[str, int]]:
    """POST every URL from `clients` threads; return seconds, latencies, outcome counts."""
    chunks = [urls[i::clients] for i in range(clients)]
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + DEADLINE

    def client(chunk: list[str]) -> None:
        mine, seen = [], {}
        with requests.Session() as session:
            for url in chunk:
                if time.monotonic() > stop_at:
                    seen["deadline"] = seen.get("deadline", 0) + 1
                    continue
                start = time.perf_counter()
                try:
                    response = session.post(url, data="List-Unsubscribe=One-Click",
                                            allow_redirects=False, timeout=10, headers={
                                                "Content-Type":
                                                    "application/x-www-form-urlencoded"})
                    key = str(response.status_code)
                except requests.RequestException as exc:
                    key = type(exc).__name__
                mine.append(time.perf_counter() - start)
                seen[key] = seen.get(key, 0) + 1
        with lock:
            latencies.extend(mine)
            for key, count in seen.items():
                outcomes[key] = outcomes.get(key, 0) + count

    threads = [threading.Thread(target=client, args=(chunk,)) for chunk in chunks]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE + 30)
    return time.perf_counter() - start, latencies, outcomes


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--readers", type=int, default=2000, metavar="N",
                        help="readers to import and unsubscribe (default: 2000)")
    parser.add_argument("--clients", type=int, default=20, metavar="C",
                        help="concurrent client threads (default: 20)")
    parser.add_argument("--workers", type=int, default=2,
                        help="gunicorn worker processes (default: 2)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="POSTs per reader, shuffled (default: 1)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="runletter-bench-serve-") as tmp:
        root = copy_sample(Path(tmp))
        project = open_project(root)
        with Store.open(project.config.store_path) as store:
            report = import_file(store, write_readers(root, args.readers), project.goals,
                                 ArrivalOptions(source="runletter"))
            ids = {r.email: r.id for r in store.list()}
        assert report.added == args.readers, report
        port = free_port()
        signer = Signer(SECRET)
        urls = [f"http://{HOST}:{port}/unsubscribe/"
                f"{signer.sign('unsubscribe', sid, bind=addr)}"
                for addr, sid in ids.items()] * args.repeat
        random.Random(7).shuffle(urls)

        proc = start_server(root, port, args.workers)
        try:
            seconds, latencies, outcomes = load(urls, args.clients)
        finally:
            stop_server(proc)

        with Store.open(project.config.store_path) as store:
            conn = store.conn
            total = conn.execute("SELECT COUNT(*) FROM subscribers").fetchone()[0]
            unsubscribed = conn.execute("SELECT COUNT(*) FROM subscribers WHERE status = "
                                        "'unsubscribed'").fetchone()[0]
            per_reader = conn.execute(
                "SELECT s.id, COUNT(a.id) FROM subscribers s LEFT JOIN audit a ON "
                "a.subscriber_id = s.id AND a.new_status = 'unsubscribed' GROUP BY s.id"
            ).fetchall()
            broken_chain = conn.execute(
                "SELECT COUNT(*) FROM audit WHERE new_status = 'unsubscribed' AND "
                "old_status <> 'active'").fetchone()[0]

    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    exactly_once = sum(1 for _, n in per_reader if n == 1)
    print(f"readers {args.readers}, {len(urls)} POSTs, {args.clients} clients, "
          f"{args.workers} workers x 4 threads")
    print(f"  {seconds:.2f} s, {len(latencies) / seconds:.0f} requests/s; latency p50 "
          f"{quantiles[49] * 1000:.1f} ms, p95 {quantiles[94] * 1000:.1f} ms, "
          f"p99 {quantiles[98] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    print(f"  answers: {dict(sorted(outcomes.items()))}")
    print(f"  store: {total} readers ({args.readers} imported), {unsubscribed} unsubscribed, "
          f"{exactly_once} with exactly one 'unsubscribed' audit row, "
          f"{broken_chain} audit rows not from 'active'")
    ok = (outcomes == {"200": len(urls)} and total == args.readers
          and unsubscribed == args.readers and exactly_once == args.readers
          and broken_chain == 0)
    print("  OK: every reader unsubscribed exactly once, nothing lost" if ok else "  FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
