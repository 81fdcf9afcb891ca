"""Plain helpers many test modules call: a copy of the sample, the CLI in-process, the outbox,
a fake clock, ports.

Fixtures are in conftest.py, constants in samples.py; the servers the tests start have modules
of their own beside this one (smtp_server.py, moto_server.py, live_server.py) and in contract/.
"""

from __future__ import annotations

import datetime as dt
import email
import email.header
import email.policy
import email.utils
import functools
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.arrivals import ArrivalOptions, import_file
from publisher.cli import main
from publisher.config import load_config
from publisher.store import Store, now
from tests.samples import DATABASE_URL, FIXTURE, HOST, REPO, STORE


def copy_sample(target: Path) -> Path:
    """Copy the repo's sample newsletter (config, content, goals, readers, layouts) to target."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "runletter.toml", target / "runletter.toml")
    for folder in ("content", "layouts"):
        shutil.copytree(REPO / folder, target / folder)
    (target / "subscribers").mkdir()
    for name in ("goals.toml", "sample.csv"):
        shutil.copy(REPO / "subscribers" / name, target / "subscribers" / name)
    return target



def free_port() -> int:
    """A port nobody listens on right now (older Controllers cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def run(*args: str):
    """`runletter ARGS` in-process; an exception ends up in the result, as exit code 1."""
    return CliRunner().invoke(main, list(args))


def run_raising(*args: str):
    """`runletter ARGS` in-process; an exception the CLI does not handle fails the test."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_user_error(result, expected: str) -> None:
    """Exit 1, exactly the expected lines, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr == expected


def import_sample(root: Path) -> None:
    """Import the sample's readers into the store of the newsletter in the current folder."""
    assert run_raising("subscribers", "import", "subscribers/sample.csv").exit_code == 0


def outbox_messages(root: Path) -> list[email.message.EmailMessage]:
    """Every message the outbox provider wrote."""
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted((root / "outbox" / "new").glob("*"))]


class Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even `except Exception`."""


class Clock:
    """A fake clock that only moves when the publish sleeps; records every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def with_exercise_name(tmp_path: Path, slug: str, name: str) -> Path:
    """A copy of the fixture project where one exercise has this name."""
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    path = root / "content" / "exercises" / f"{slug}.md"
    text = path.read_text(encoding="utf-8")
    start = text.index("\nname:") + 1
    end = text.index("\n", start)
    path.write_text(text[:start] + f"name: '{name}'" + text[end:], encoding="utf-8")
    return root


def address_in(data: bytes, field: str = "To") -> tuple[str, str]:
    """A header's one address as (display name, addr-spec), refusing any parse defect.

    The addr-spec is as email.policy.SMTP parses it. The display name is decoded with the
    RFC 2047 decoder of email.header: the policy parser keeps a space between adjacent
    encoded-words, which RFC 2047 6.2 says to drop (and mail clients do).
    """
    header = email.message_from_bytes(data, policy=email.policy.SMTP)[field]
    assert header.defects == ()
    [address] = header.addresses
    raw = email.message_from_bytes(data, policy=email.policy.compat32)[field]
    phrase, _ = email.utils.parseaddr(raw.replace("\r\n", ""))
    name = str(email.header.make_header(email.header.decode_header(phrase)))
    return name, address.addr_spec


def write_csv(tmp_path: Path, text: str, name: str = "readers.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


@functools.cache
def empty_store_file() -> bytes:
    """A migrated, empty store file, made once: copying it is cheaper than migrating."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "template.db"
        Store.open(path).close()
        return path.read_bytes()


def open_store(path: Path) -> Store:
    """A real store file, fresh per example; no fsync per commit, which examples wait on."""
    path.write_bytes(empty_store_file())
    store = Store.open(path)
    store.conn.execute("PRAGMA synchronous = OFF")
    return store


def project_store(root: Path) -> Store:
    """The store of the newsletter at root, as its CLI opens it: the backend's PostgreSQL
    database when the test has one (RUNLETTER_DATABASE_URL), else its SQLite file."""
    return Store.open(load_config(root).store_url())


def sqlite_only(reason: str):
    """Run a test against the SQLite backend only, for the reason given: it is about SQLite
    itself (the file's mode, WAL, PRAGMAs, schemas from before Alembic)."""
    only = pytest.mark.parametrize(
        "backend", [pytest.param("sqlite", marks=pytest.mark.sqlite_only(reason))],
        indirect=True)
    return lambda test: pytest.mark.usefixtures("backend")(only(test))


def fail_inserts_of(store: Store, address: str, message: str) -> None:
    """Make the database itself refuse to insert a reader with this address (a trigger), as
    a full disk would fail a write midway."""
    if store.dialect == "sqlite":
        store.conn.execute(f"CREATE TRIGGER boom BEFORE INSERT ON subscribers WHEN NEW.email "
                           f"= '{address}' BEGIN SELECT RAISE(ABORT, '{message}'); END")
        return
    store.conn.execute(f"CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       f"IF NEW.email = '{address}' THEN RAISE EXCEPTION '{message}'; END IF; "
                       "RETURN NEW; END $$")
    store.conn.execute("CREATE TRIGGER boom BEFORE INSERT ON subscribers FOR EACH ROW "
                       "EXECUTE FUNCTION boom()")


def punctuation_last(store: Store) -> None:
    """On PostgreSQL, make the store compare text as a database made with glibc's en_US
    collation does (punctuation ignored until letters and digits tie: "comeback/02" sorts
    after "comeback0", "A_c" before "a-z"); SQLite always compares bytes (or ASCII-folded
    bytes), so nothing changes there."""
    if store.dialect == "sqlite":
        return
    store.conn.execute("CREATE COLLATION punctuation_last "
                       "(provider = icu, locale = 'en-US-u-ka-shifted')")
    for table, column, kind in (("subscribers", "email", "citext"), ("audit", "email", "citext"),
                                ("deliveries", "post", "text"), ("ready", "step", "text"),
                                ("enrolments", "sequence", "text")):
        store.conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {kind} "
                           "COLLATE punctuation_last")


def wait_for_a_waiting_writer(store: Store, timeout: float = 10.0) -> None:
    """Wait until another connection waits for a lock `store`'s open transaction holds. On
    PostgreSQL pg_locks shows the waiter; SQLite cannot tell, so a short pause (a writer
    that comes later queues on the same lock, so the outcome is the same)."""
    if store.dialect == "sqlite":
        time.sleep(0.3)
        return
    deadline = time.monotonic() + timeout
    while not store.conn.execute("SELECT COUNT(*) FROM pg_locks WHERE NOT granted").scalar():
        assert time.monotonic() < deadline, "no other connection waited for the lock"
        time.sleep(0.02)


def set_race(store: Store, email: str, race_date: str | None, race_name: str = "") -> None:
    """Give a stored reader a race (or none), as the preferences page would."""
    store.update(email, race_date=race_date or "", race_name=race_name)


def store_rows(store: Store) -> list[str]:
    """Every row of every table of a store, as text (to compare before and after)."""
    from publisher.store.tables import metadata

    return sorted(f"{table.name}: {tuple(row)}" for table in metadata.sorted_tables
                  for row in store.conn.execute(f"SELECT * FROM {table.name}"))


# -- time: readers with a signup moment, race and zone; runs at a pinned moment ------------


def utc(text: str) -> dt.datetime:
    """An instant written as 2027-03-28T04:00 (UTC)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def add_reader(store: Store, email_addr: str, goal: str, signup: str,
               race_date: str | None = None, race_name: str = "", timezone: str = "") -> int:
    """An active reader who signed up at `signup` (UTC, as utc() reads it), with their race
    and zone; returns their id."""
    reader = store.add(email_addr, goal=goal)
    stamp = utc(signup).isoformat(timespec="seconds")
    # No verb sets a race or a zone yet (the signup form and the import will): written here
    # as they will store them.
    with store.transaction() as conn:
        conn.execute(
            "UPDATE subscribers SET consent_at = :consent_at, created_at = :created_at, "
            "enrolled_at = :enrolled_at, "
            "race_date = :race_date, race_name = :race_name, timezone = :timezone WHERE id = :id",
            {
                "consent_at": stamp,
                "created_at": stamp,
                "enrolled_at": stamp,
                "race_date": race_date,
                "race_name": race_name,
                "timezone": timezone,
                "id": reader.id,
            },
        )
    return reader.id


def move_race(store: Store, email_addr: str, race_date: str) -> None:
    """A reader's race moved to another date, written past the store's checks (so also a
    date a store from before dates were bounded may hold, e.g. year 1 or 9999)."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE subscribers SET race_date = :race_date WHERE email = :email",
            {"race_date": race_date, "email": email_addr},
        )


def say_ready(store: Store, email_addr: str, step: str, at: str) -> None:
    """A reader's "ready" at a gated step, written as the /ready endpoint will: the row, and
    their enrolment looked at again by the next run."""
    sid = store.get(email_addr).id
    with store.transaction() as conn:
        conn.execute("INSERT INTO ready(subscriber_id, step, at) "
                     "VALUES (:subscriber_id, :step, :at)",
                     {"subscriber_id": sid, "step": step,
                      "at": utc(at).isoformat(timespec="seconds")})
        conn.execute("UPDATE enrolments SET next_at = 0 WHERE subscriber_id = :subscriber_id "
                     "AND sequence = :sequence",
                     {"subscriber_id": sid, "sequence": step.split("/")[0]})


def states(store: Store, email_addr: str) -> dict[str, str]:
    """Each item's ledger state for one reader."""
    return dict(store.conn.execute(
        "SELECT d.post, d.state FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
        "WHERE s.email = :email ORDER BY d.post", {"email": email_addr}).fetchall())


def mark_sent(store: Store, item: str, at: str) -> None:
    """An item's planned rows settled as sent at an instant (what a run's send records)."""
    stamp = utc(at).isoformat(timespec="seconds")
    with store.transaction() as conn:
        conn.execute("UPDATE deliveries SET state = 'sent', sent_at = :sent_at, updated_at = "
                     ":updated_at "
                     "WHERE post = :post AND state = 'planned'",
                     {"sent_at": stamp, "updated_at": stamp, "post": item})


def scheduled_post(root: Path, slug: str, send_at: str,
                   body: str = "A scheduled note for {{ first_name | default('you') }}.") -> str:
    """Write content/posts/<slug>.md with this send_at (a date or an instant); its slug."""
    (root / "content" / "posts" / f"{slug}.md").write_text(
        f"---\ntitle: \"Scheduled {slug}\"\ndate: {slug[:10]}\ntopic: strength\n"
        f"preheader: \"A post with a send_at.\"\nsend_at: {send_at}\n---\n{body}\n",
        encoding="utf-8")
    return slug


def publish_due(now: str, *extra: str):
    """`runletter publish --due --now NOW --yes` in-process, standing at a UTC instant."""
    return run("publish", "--due", "--now", f"{now}Z", "--yes", *extra)


def received(root: Path) -> Counter:
    """(recipient, item) of each message in the outbox, counted."""
    return Counter((m["To"].addresses[0].addr_spec,
                    m["X-Runletter-Edition"].rsplit("/", 1)[0]) for m in outbox_messages(root))


def message_ids(root: Path) -> Counter:
    """The Message-IDs in the outbox, counted (one per item and reader: a 2 is a duplicate)."""
    ids: Counter = Counter()
    for path in (root / "outbox" / "new").glob("*"):
        with open(path, "rb") as handle:
            head = email.message_from_binary_file(handle, policy=email.policy.default,
                                                  _class=email.message.EmailMessage)
        ids[head["Message-ID"]] += 1
    return ids


def runletter(root: Path, *args: str) -> subprocess.Popen:
    """`runletter ARGS` as a process of its own in the project at root."""
    return subprocess.Popen([sys.executable, "-m", "publisher.cli", *args], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def time_rows(root: Path) -> dict[str, list[tuple]]:
    """Every row of the time feature's tables (ledger, enrolments, ready), read without
    opening a Store on a SQLite file (which would migrate or create it); the backend's
    PostgreSQL database is made migrated, so a Store reads it as it is."""
    tables = ("deliveries", "enrolments", "ready")
    if url := os.environ.get(DATABASE_URL):
        with Store.open(url) as store:
            return {table: [tuple(row) for row in store.conn.execute(
                f"SELECT * FROM {table} ORDER BY 1, 2")] for table in tables}
    conn = sqlite3.connect(f"file:{root / STORE}?mode=ro", uri=True)
    try:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in tables}
    finally:
        conn.close()


# -- concurrency: many readers at once, and when each ledger row was claimed ------------------


def fill_readers(url: str, count: int, goals: list[str]) -> list[tuple[int, str]]:
    """`count` active readers spread over these goals, added in one transaction to the store
    at this URL; (id, address) of each, by id."""
    stamp = now()
    with Store.open(url) as store:
        with store.transaction() as conn:
            conn.executemany(
                "INSERT INTO subscribers(email, first_name, goal, tags, status, consent_source, "
                "consent_at, created_at, updated_at) VALUES (:email, '', :goal, '', 'active', "
                "'test', :at, :at, :at)",
                ({"email": f"reader{n:05d}@example.com", "goal": goals[n % len(goals)],
                  "at": stamp} for n in range(count)))
        return [(sid, addr) for sid, addr in
                store.conn.execute("SELECT id, email FROM subscribers ORDER BY id")]


# A table of the test's own, and a trigger that notes in it when each ledger row went in
# flight: the moment the claiming statement began (PostgreSQL: before its snapshot), or ran
# (SQLite: under the write lock), in unix seconds. The ledger keeps no claim time of its own
# (a settled row's updated_at is its settling time, to the second).
CLAIM_LOG = {
    "sqlite": (
        "CREATE TABLE claim_log(subscriber_id INTEGER, at REAL)",
        "CREATE TRIGGER claim_log AFTER UPDATE OF state ON deliveries "
        "WHEN NEW.state = 'in-flight' AND OLD.state != 'in-flight' BEGIN "
        "INSERT INTO claim_log VALUES (NEW.subscriber_id, "
        "(julianday('now') - 2440587.5) * 86400.0); END"),
    "postgresql": (
        "CREATE TABLE claim_log(subscriber_id INTEGER, at DOUBLE PRECISION)",
        "CREATE FUNCTION log_claim() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO claim_log VALUES (NEW.subscriber_id, "
        "extract(epoch FROM statement_timestamp())); RETURN NULL; END $$",
        "CREATE TRIGGER claim_log AFTER UPDATE OF state ON deliveries FOR EACH ROW "
        "WHEN (NEW.state = 'in-flight' AND OLD.state <> 'in-flight') "
        "EXECUTE FUNCTION log_claim()"),
}


def log_claims(url: str) -> None:
    """Have the store at this URL note when each ledger row is claimed (see CLAIM_LOG)."""
    with Store.open(url) as store, store.transaction() as conn:
        for statement in CLAIM_LOG[store.dialect]:
            conn.raw(statement)


def claims(url: str) -> dict[int, list[float]]:
    """When each reader's ledger rows were claimed (unix seconds), as log_claims noted."""
    found: dict[int, list[float]] = {}
    with Store.open(url) as store:
        for sid, at in store.conn.execute("SELECT subscriber_id, at FROM claim_log ORDER BY at"):
            found.setdefault(sid, []).append(at)
    return found


def version_5_store(path: Path, email_addr: str) -> None:
    """A store as runletter left it at schema version 5 (before Alembic), with one reader."""
    from publisher.store import MIGRATIONS

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version(version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (5)")
    for script in MIGRATIONS[:5]:
        conn.executescript(script)
    conn.execute("INSERT INTO subscribers(email, status, created_at, updated_at) VALUES "
                 "(:email, 'active', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
                 {"email": email_addr})
    conn.commit()
    conn.close()


def import_csv(store: Store, path: Path, goals, *, display: str | None = None):
    """Import Runletter's own CSV into a store (what `subscribers import --from runletter`
    does); the ArrivalReport."""
    return import_file(store, path, goals, ArrivalOptions(source="runletter"), display=display)


def forget_module(monkeypatch, name: str) -> None:
    """Make the next import of `name` load it afresh, and put everything back afterwards:
    the entry in sys.modules and the parent package's attribute (a fresh import rebinds it,
    and a later `monkeypatch.setattr("a.b.NAME")` would otherwise patch the fresh copy while
    the registry loads the original)."""
    parent, _, leaf = name.rpartition(".")
    monkeypatch.setattr(sys.modules[parent], leaf, sys.modules[name])
    monkeypatch.delitem(sys.modules, name)
