"""Deciding what is due, and sending it, for 100,000 readers with race dates.

Run by hand: `python bench/due.py [--readers N] [--store URL]`. Three race sequences (seven
steps each: 12, 8, 4, 2 and 1 weeks before race, race day, 3 days after) share the readers by
goal; race dates spread over one week, so at the send hour of any day a seventh of the
readers have a step due. Measured, each on a copy of the sample newsletter with a fresh store:
  first look   the first run ever: every reader enrolled (nothing due yet)
  quiet hour   a run at an hour when nothing is due (target <= 1 s)
  busy hour    a run when a seventh are due: the decision, then the send to the outbox
  next run     the run after it, looking again at the readers just sent to
Peak RSS is printed after each phase (memory should stay flat).

Then, against the busy hour: a plain `publish` of an ordinary post (hip-drive) to as many
readers as the busy hour sent, through the same outbox, on a fresh copy of the sample with a
fresh store of that many readers, and the ratio `busy hour write+send / plain publish`
(target <= 1.35). Both sides are timed the same way, in this process (as `run` does, so the
busy hour keeps its decide / write+send split): from opening the store to write the plan
(the due path's decision and enrolments; the plain publish's ledger.plan) to the last call
settled. Rendering is outside both (the due path renders in `decide`; the plain publish's
`prepare` is not timed).

The store is a SQLite file in each throwaway copy by default; `--store postgresql://...`
uses that database for both sides, emptied before each (every table of COPY_ORDER,
truncated).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sample import arguments, copy_sample, machine, peak_rss_mb  # noqa: E402

from publisher import clock  # noqa: E402
from publisher.commands import due as dueing  # noqa: E402
from publisher.commands import publish as publishing  # noqa: E402
from publisher.commands.publish import choose_provider  # noqa: E402
from publisher.config import ENV  # noqa: E402
from publisher.delivery.tokens import Signer  # noqa: E402
from publisher.project import open_project  # noqa: E402
from publisher.store import Store  # noqa: E402
from publisher.store.tables import COPY_ORDER  # noqa: E402

READERS = 100_000
SEQUENCES = {"marathon-build": ["marathon", "half"], "speed-build": ["5k", "10k"],
             "ultra-build": ["ultra"]}
STEPS = [("01-twelve", "12 weeks before race"), ("02-eight", "8 weeks before race"),
         ("03-four", "4 weeks before race"), ("04-two", "2 weeks before race"),
         ("05-one", "1 week before race"), ("06-race", "race day"),
         ("07-after", "3 days after race")]
RACE_DAY = dt.date(2027, 6, 6)  # the first of seven race dates
PLAIN_POST = "2026-11-24-hip-drive"  # an ordinary post, to every goal of the sequences
TARGET = 1.35  # busy hour write+send / plain publish


def write_sequences(root: Path) -> None:
    """Three race sequences of seven steps."""
    shutil.rmtree(root / "content/sequences", ignore_errors=True)
    for slug, audience in SEQUENCES.items():
        folder = root / "content/sequences" / slug
        folder.mkdir(parents=True)
        (folder / "sequence.toml").write_text(
            f'name = "{slug}"\nanchor = "race"\naudience = {audience!r}\n'.replace("'", '"'))
        for name, when in STEPS:
            (folder / f"{name}.md").write_text(
                f'---\ntitle: "{slug} {name}"\ntopic: strength\nexercises: [hip-thrust]\n'
                f'preheader: "Step {name}"\nwhen: "{when}"\n---\n'
                'Hi {{ first_name | default("runner") }}, {{ weeks_to_race }} weeks to '
                '{{ race_name | default("your race") }}.\n', encoding="utf-8")


def fill_store(url: str, readers: int) -> None:
    """Readers spread over the sequences' goals and seven race dates, in one transaction,
    into an emptied store."""
    goals = [g for audience in SEQUENCES.values() for g in audience]
    signup = "2026-12-01T08:00:00+00:00"
    with Store.open(url) as store, store.transaction() as conn:
        if store.dialect == "postgresql":
            # A DELETE checks every reader's enrolments, unindexed by reader: minutes.
            conn.execute(f"TRUNCATE {', '.join(t.name for t in COPY_ORDER)}")
        else:
            for table in reversed(COPY_ORDER):
                conn.execute(f"DELETE FROM {table.name}")
        for start in range(0, readers, 10_000):  # in slices: memory stays at one slice
            conn.executemany(
                "INSERT INTO subscribers(email, first_name, goal, status, consent_source, "
                "consent_at, created_at, updated_at, enrolled_at, race_date, race_name) "
                "VALUES (:email, 'Runner', :goal, 'active', 'bench', :signup, :signup, :signup, "
                ":signup, :race_date, 'Bench Marathon')",
                [{"email": f"r{i}@example.com", "goal": goals[i % len(goals)], "signup": signup,
                  "race_date": (RACE_DAY + dt.timedelta(days=i % 7)).isoformat()}
                 for i in range(start, min(start + 10_000, readers))])


def run(project, at: dt.datetime, send: bool) -> tuple[float, float, int]:
    """One `publish --due` run at `at`: seconds to decide, seconds to send, messages."""
    with clock.pinned(at):
        start = time.perf_counter()
        decided = dueing.decide(project, at)
        decide_s = time.perf_counter() - start
        start = time.perf_counter()
        if not send or decided.to_send == 0:
            dueing.record_only(decided, project)
            return decide_s, time.perf_counter() - start, 0
        provider = choose_provider(project, "outbox")
        with dueing.sending(decided, project, provider, Signer("b" * 32)) as go:
            done = go()
        sent = sum(sum(o.sent.values()) for _, o in done)
    return decide_s, time.perf_counter() - start, sent


def plain_publish(readers: int) -> float:
    """Seconds for a plain `publish` of PLAIN_POST to `readers` readers through the outbox,
    on a fresh copy of the sample and a fresh store of that many readers: from writing the
    plan to the last call settled, as `run` times the busy hour's write+send."""
    root = copy_sample()
    try:
        project = open_project(root)
        fill_store(project.config.store_url(), readers)
        publication = publishing.prepare(project, PLAIN_POST)
        provider = choose_provider(project, "outbox")
        start = time.perf_counter()
        with publishing.sending(publication, provider, Signer("b" * 32)) as go:
            outcome = go()
        took = time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if sum(outcome.sent.values()) != readers:
        raise SystemExit(f"plain publish sent {sum(outcome.sent.values())}, not {readers}")
    return took


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--readers", type=int, default=READERS, metavar="N",
                        help=f"readers in the store (default: {READERS:,})")
    parser.add_argument("--store", metavar="URL", help="the store (default: a SQLite file "
                        "in the throwaway copy); a PostgreSQL database is emptied first")
    args = parser.parse_args()
    if args.store:  # the project's store_url() reads it, for both sides
        os.environ[ENV] = args.store
    root = copy_sample()
    write_sequences(root)
    project = open_project(root)
    start = time.perf_counter()
    fill_store(project.config.store_url(), args.readers)
    print(f"machine: {machine()}; store: {'PostgreSQL' if args.store else 'SQLite file'}; "
          f"{args.readers:,} readers stored in {time.perf_counter() - start:.1f} s")
    twelve_out = dt.datetime.combine(RACE_DAY - dt.timedelta(weeks=12), dt.time(6),
                                     dt.UTC)
    phases = [("first look", twelve_out - dt.timedelta(days=1), False),
              ("quiet hour", twelve_out - dt.timedelta(hours=23), False),
              ("busy hour", twelve_out, True),
              ("next run", twelve_out + dt.timedelta(minutes=15), True),
              ("quiet hour", twelve_out + dt.timedelta(hours=1), True)]
    busy = None
    for name, at, send in phases:
        decide_s, send_s, sent = run(project, at, send)
        print(f"{name:11} {at:%Y-%m-%d %H:%M}Z  decide {decide_s:6.2f} s  "
              f"write+send {send_s:6.2f} s  sent {sent:6,}  peak RSS {peak_rss_mb():6.1f} MB")
        if name == "busy hour":
            busy = (send_s, sent)
    shutil.rmtree(root, ignore_errors=True)
    send_s, sent = busy
    plain_s = plain_publish(sent)
    print(f"plain publish of {PLAIN_POST} to {sent:,} readers: write+send {plain_s:6.2f} s; "
          f"busy hour write+send / plain publish = {send_s / plain_s:.2f}x "
          f"(target <= {TARGET}x)")


if __name__ == "__main__":
    main()
