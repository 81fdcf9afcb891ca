"""Import a generated Mailchimp audience export of N readers with `runletter subscribers import`.

Run by hand: `python bench/import.py [--readers N]` (default 100,000; also runs 10,000 to show
memory does not grow with the file). Each import is a fresh process into a new store, then a
second process imports the same file again (every reader already stored: the update path).
Prints wall time, CPU time and peak RSS of each process, and the peak of Python's own
allocations (tracemalloc, in a third process): RSS also holds SQLite's page cache, which grows
with the database up to the store's cache_size ceiling (64 MB) whatever the file's size.
Targets: < 10 s for 100,000 rows; Python's peak the same for 10k and 100k rows (streamed).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _sample import arguments, copy_sample, machine  # noqa: E402

HEADER = ["Email Address", "First Name", "Last Name", "Race Distance", "MEMBER_RATING",
          "OPTIN_TIME", "OPTIN_IP", "CONFIRM_TIME", "CONFIRM_IP", "LATITUDE", "LONGITUDE",
          "GMTOFF", "DSTOFF", "TIMEZONE", "CC", "REGION", "LAST_CHANGED", "LEID", "EUID",
          "NOTES", "TAGS"]
NAMES = ["Zoë", "Łukasz", "Freja", "José", "愛子", "Siobhán", "Mateus", "Amara", "Björn", "Noé"]
GOALS = ["5K", "10K", "Half Marathon", "Marathon", "Ultra", "Comeback from injury", ""]
TAGS = ['"Road"', '"Track","Parkrun"', '"Trail","Masters 40+"', ""]


def write_export(path: Path, readers: int) -> None:
    """A subscribed-members export as Mailchimp writes it: BOM, CRLF, quoted when needed."""
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(HEADER)
        for i in range(readers):
            day = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}"
            writer.writerow([
                f"reader{i:06d}@example.com", NAMES[i % len(NAMES)], "Runner",
                GOALS[i % len(GOALS)], 1 + i % 5, f"{day} 07:05:12", "203.0.113.24",
                f"{day} 07:06:40", "203.0.113.24", "45.4642000", "9.1900000", 1, 2,
                "Europe/Rome", "IT", "MI", f"{day} 07:06:40", 118830211 + i, f"{i:010x}",
                "", TAGS[i % len(TAGS)]])


def import_once(root: Path, path: Path) -> tuple[float, float, float, str]:
    """Wall and CPU seconds and peak RSS (MB) of one `runletter subscribers import` process."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "publisher.cli", "subscribers", "import",
                              str(path)], cwd=root, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    output = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status:
        raise SystemExit(f"import failed:\n{output}")
    return (wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
            output.strip().splitlines()[-1])


def python_peak(path: Path) -> float:
    """Peak MB of Python's own allocations while importing `path` into a new store."""
    child = subprocess.run([sys.executable, __file__, "--traced", str(path)], check=True,
                           capture_output=True, text=True)
    return float(child.stdout)


def traced(path: Path) -> None:
    """Import in this process under tracemalloc; print the peak in MB."""
    import tempfile
    import tracemalloc

    sys.path.insert(0, str(HERE.parent))
    from publisher.arrivals import import_file
    from publisher.content.posts import load_goals
    from publisher.store import Store

    goals = load_goals(HERE.parent / "subscribers/goals.toml", HERE.parent)
    with tempfile.TemporaryDirectory() as folder, Store.open(Path(folder) / "t.db") as store:
        tracemalloc.start()
        import_file(store, path, goals)
        print(tracemalloc.get_traced_memory()[1] / 1e6)


def run(readers: int) -> dict[str, object]:
    root = copy_sample()
    path = root / "subscribed_members_export_bench.csv"
    write_export(path, readers)
    first = import_once(root, path)
    again = import_once(root, path)
    return {"readers": readers, "size": path.stat().st_size / 1e6, "first": first,
            "again": again, "python": python_peak(path)}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--readers", type=int, default=100_000, metavar="N",
                        help="rows in the generated export (default: 100,000, then 10,000 "
                        "for memory)")
    parser.add_argument("--traced", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.traced:
        traced(args.traced)
        return
    sizes = [args.readers] + ([10_000] if args.readers == 100_000 else [])
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}")
    results = [run(n) for n in sizes]
    for r in results:
        for label in ("first", "again"):
            wall, cpu, rss, summary = r[label]
            print(f"{r['readers']:>7} rows ({r['size']:.1f} MB), {label:>5}: {wall:5.2f} s wall, "
                  f"{cpu:5.2f} s CPU, peak RSS {rss:.0f} MB  [{summary}]")
        print(f"{r['readers']:>7} rows: Python's own peak {r['python']:.1f} MB")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print("targets: < 10 s for 100,000 rows; Python's peak flat (10k ~ 100k)")


if __name__ == "__main__":
    main()
