"""Export N readers with `runletter subscribers export` to a file.

Run by hand: `python bench/export.py [--readers N] [--store URL]` (default 1,000,000, then
N/10, to show memory does not grow with the list; the store defaults to a SQLite file in a
throwaway copy of the sample, `--store postgresql://user@host:port/db` uses that database,
emptied and filled before each run). The readers' addresses mix case and the characters
collations disagree on ('_', '-', '.'), and are inserted out of address order, as a list that
grew over years is. Prints wall time, rows written and peak RSS of the export process (VmHWM of
the process itself, read while it runs). On SQLite the RSS also holds the page cache, which
grows with the database up to the store's cache_size ceiling (64 MB) whatever the list's size.
Targets: 1,000,000 readers in < 30 s; peak RSS flat (N and N/10 within a few MB, SQLite's page
cache aside).
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _sample import arguments, copy_sample, machine, run_watched  # noqa: E402

from publisher.store import Store, now  # noqa: E402
from publisher.store.tables import COPY_ORDER  # noqa: E402

GOALS = ["5k", "10k", "half", "marathon", "ultra", "comeback"]
STATUSES = ["active"] * 8 + ["unsubscribed", "bounced"]
NAMES = ["Ana", "Ben", "Chloé", "Dev", "Emeka", "Fatima", "Gus", "Hana", "Ivo", "Jo"]
# Separators the database's collation and "C" order differently, and case the store folds.
SHAPES = ["{name}.{n}@example.com", "{name}_{n}@Example.org", "{upper}-{n}@example.net",
          "{name}{n}@run.example.com"]
STRIDE = 7_919  # a prime: i * STRIDE mod N visits every number below N once, out of order


def address(i: int, readers: int) -> str:
    """The i-th generated reader's address; every one distinct, whatever their case."""
    n = (i * STRIDE) % readers if readers % STRIDE else i
    name = NAMES[n % len(NAMES)]
    shape = SHAPES[(n // len(NAMES)) % len(SHAPES)]
    return shape.format(name=name.lower(), upper=name.upper(), n=f"{n:07d}")


def fill_store(url: str, readers: int) -> None:
    """N readers over six goals and three statuses, in one transaction, into an emptied store."""
    stamp = now()
    rng = random.Random(readers)  # goal and status independent of the address's shape
    with Store.open(url) as store, store.transaction() as conn:
        if conn.dialect == "postgresql":  # DELETE would fire the cascades row by row
            conn.execute(f"TRUNCATE {', '.join(t.name for t in COPY_ORDER)}")
        else:
            for table in reversed(COPY_ORDER):
                conn.execute(f"DELETE FROM {table.name}")
        conn.executemany(
            "INSERT INTO subscribers(email, first_name, goal, tags, status, consent_source, "
            "consent_at, created_at, updated_at) VALUES (:email, :first_name, :goal, '', "
            ":status, 'bench', :at, :at, :at)",
            ({"email": address(i, readers), "first_name": NAMES[i % len(NAMES)],
              "goal": rng.choice(GOALS), "status": rng.choice(STATUSES), "at": stamp}
             for i in range(readers)))


def export(root: Path, store: str, out: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) and rows written of one `runletter subscribers export`."""
    env = {**os.environ, "RUNLETTER_DATABASE_URL": store}
    with out.open("wb") as sink:
        status, errors, wall, peak = run_watched(
            [sys.executable, "-m", "publisher.cli", "subscribers", "export"], root, env, sink)
    if status:
        raise SystemExit(f"export failed:\n{errors}")
    with out.open("rb") as written:
        rows = sum(1 for _ in written) - 1  # the header; no cell holds a line break here
    return wall, peak, rows


def run(readers: int, store: str | None) -> dict[str, float]:
    root = copy_sample()
    store = store or f"sqlite:///{root / 'subscribers/runletter.db'}"
    start = time.perf_counter()
    fill_store(store, readers)
    filled = time.perf_counter() - start
    wall, rss, rows = export(root, store, root / "readers.csv")
    return {"readers": readers, "fill": filled, "wall": wall, "rss": rss, "rows": rows}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--readers", type=int, default=1_000_000, metavar="N",
                        help="readers to export (default: 1,000,000; N/10 runs after, for "
                        "memory)")
    parser.add_argument("--store", metavar="URL", help="the store (default: a SQLite file "
                        "in the throwaway copy); a PostgreSQL database is emptied first")
    args = parser.parse_args()
    print(f"machine: {machine()}; store: {args.store or 'SQLite file'}; "
          f"load average {os.getloadavg()[0]:.1f}")
    results = [run(n, args.store) for n in (args.readers, args.readers // 10)]
    for r in results:
        print(f"{r['readers']:>8} readers (filled in {r['fill']:.0f} s): {r['wall']:6.1f} s "
              f"wall, {r['rows']} rows written, peak RSS {r['rss']:.0f} MB")
    spread = abs(results[0]["rss"] - results[1]["rss"])
    print(f"peak RSS spread N vs N/10: {spread:.0f} MB; load average after: "
          f"{os.getloadavg()[0]:.1f}")
    print("targets: 1,000,000 readers in < 30 s; peak RSS flat")


if __name__ == "__main__":
    main()
