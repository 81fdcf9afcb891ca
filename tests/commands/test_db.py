"""`runletter db`: upgrade a store's schema, show it, copy it (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from publisher.commands.db import given_url
from publisher.store import Store
from publisher.store.ledger import Ledger
from publisher.store.tables import COPY_ORDER
from publisher.store.upgrade import HEAD
from tests.helpers.support import assert_user_error, free_port, run, store_rows, version_5_store
from tests.samples import GATE, HOST, RUNNER, STORE

TABLES = [table.name for table in COPY_ORDER]


def fill_every_table(store: Store) -> list[int]:
    """Rows in every table a copy copies: readers (one removed, so the ids have a gap), their
    audit trail, a ledger with a call claimed, an enrolment, a ready, serve's marks, a
    signup's proposal; the readers' ids."""
    ids = [store.add(f"reader{n}@example.com", first_name=f"Reader {n}").id for n in range(4)]
    store.remove("reader1@example.com")
    store.set_status("reader3@example.com", "unsubscribed", "asked by email")
    ledger = Ledger(store)
    ledger.plan("2026-01-01-everything", ["general"])
    ledger.mark_in_flight("2026-01-01-everything",  # a call claimed: one in `calls`
                          ledger.peek("2026-01-01-everything", "general", 1, 5, 0.0))
    with store.transaction() as conn:
        conn.execute("INSERT INTO enrolments(sequence, subscriber_id, basis, next_at, waiting) "
                     "VALUES ('comeback', :id, '2027-01-01', 1.5, :waiting)",
                     {"id": ids[0], "waiting": GATE})
        conn.execute("INSERT INTO merged_readers(id, into_id, email) VALUES (:id, :into, :email)",
                     {"id": ids[1], "into": ids[0],
                      "email": "READER1@example.com"})  # as migration 0007 merges
    store.mark_ready(ids[0], GATE)
    store.take_signup_slot("192.0.2.1", 5, 3600.0, 1000.0)
    store.mark_webhook_seen("postmark", "token-1", 3600.0, 1000.0)
    store.propose(ids[3], goal="5k", first_name="Proposed")
    return [i for i in ids if i != ids[1]]


def counts_of(output: str) -> dict[str, list[int]]:
    """The numbers on each table's line of a printed table of counts."""
    found = {}
    for line in output.splitlines():
        name, *numbers = line.split()
        if name in TABLES:
            found[name] = [int(n) for n in numbers]
    return found


def filled_store(path: Path) -> Path:
    """A SQLite store at path with rows in every table."""
    with Store.open(path) as store:
        fill_every_table(store)
    return path


def rows_at(where: Path | str) -> list[str]:
    """Every row of every table of the store at a path or URL."""
    with Store.open(where) as store:
        return store_rows(store)


# -- status ----------------------------------------------------------------------------------


def test_status_shows_the_store_its_dialect_schema_and_the_rows_of_every_table(project_dir):
    with Store.open(project_dir / STORE) as store:
        fill_every_table(store)
        expected = {name: [store.conn.execute(f"SELECT COUNT(*) FROM {name}").scalar_one()]
                    for name in TABLES}

    result = run("db", "status")

    assert result.exit_code == 0, result.output
    assert f"store: sqlite:///{project_dir / STORE}\n" in result.stdout
    assert "dialect: sqlite\n" in result.stdout
    assert f"schema: {int(HEAD)} (the latest)\n" in result.stdout
    assert counts_of(result.stdout) == expected


def test_status_of_an_old_store_names_its_version_and_leaves_it_at_that_version(project_dir):
    version_5_store(project_dir / STORE, RUNNER)

    result = run("db", "status")

    assert result.exit_code == 0, result.output
    assert (f"schema: 5 (this runletter's is {int(HEAD)}: run 'runletter db upgrade')\n"
            in result.stdout)
    assert counts_of(result.stdout)["subscribers"] == [1]
    with sqlite3.connect(project_dir / STORE) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(5,)]
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'alembic_version'"
                            ).fetchall() == []


def test_status_of_a_store_not_made_yet_says_so_and_makes_none(project_dir):
    result = run("db", "status")

    assert result.exit_code == 0, result.output
    assert "schema: none yet ('runletter db upgrade' makes the tables)\n" in result.stdout
    assert not (project_dir / STORE).exists()


def test_status_hides_the_password_of_the_environments_url(project_dir, postgres_url,
                                                           monkeypatch):
    with_password = postgres_url.replace("runletter@", "runletter:s3cret-pw@")
    monkeypatch.setenv("RUNLETTER_DATABASE_URL", with_password)

    result = run("db", "status")

    assert result.exit_code == 0, result.output
    assert "s3cret-pw" not in result.output
    assert "dialect: postgresql\n" in result.stdout
    assert "store: postgresql://runletter:***@" in result.stdout


def test_an_unreachable_postgresql_store_is_one_line_naming_its_host_and_port(project_dir,
                                                                            monkeypatch):
    port = free_port()
    monkeypatch.setenv("RUNLETTER_DATABASE_URL",
                       f"postgresql://runletter:s3cret-pw@{HOST}:{port}/runletter")

    result = run("db", "status")

    lines = result.stderr.splitlines()
    assert_user_error(result, result.stderr)
    assert len(lines) == 2 and lines[1] == "1 error"
    assert lines[0].startswith("runletter: error: cannot connect to the PostgreSQL store at "
                               f"{HOST}:{port} ")
    assert "s3cret-pw" not in result.output


# -- upgrade ---------------------------------------------------------------------------------


def test_upgrade_brings_a_version_5_store_to_the_latest_schema_keeping_its_readers(
        project_dir):
    version_5_store(project_dir / STORE, RUNNER)

    result = run("db", "upgrade")

    assert result.exit_code == 0, result.output
    assert result.stdout == (f"store sqlite:///{project_dir / STORE}: schema 5 -> "
                             f"{int(HEAD)}\n")
    with Store.open(project_dir / STORE) as store:
        assert store.schema_version == int(HEAD)
        assert store.get(RUNNER).status == "active"


def test_upgrade_of_an_up_to_date_store_says_so(project_dir):
    Store.open(project_dir / STORE).close()

    result = run("db", "upgrade")

    assert result.stdout == (f"store sqlite:///{project_dir / STORE}: schema {int(HEAD)} "
                             "(up to date)\n")


def test_upgrade_makes_a_new_store_at_the_latest_schema(project_dir):
    result = run("db", "upgrade")

    assert result.stdout == (f"store sqlite:///{project_dir / STORE}: made at schema "
                             f"{int(HEAD)}\n")
    assert (project_dir / STORE).is_file()


# -- copy ------------------------------------------------------------------------------------


def test_copy_between_sqlite_stores_copies_every_table_and_prints_equal_counts(tmp_path):
    source = filled_store(tmp_path / "source.db")

    result = run("db", "copy", f"sqlite:///{source}", f"sqlite:///{tmp_path / 'target.db'}")

    assert result.exit_code == 0, result.output
    counted = counts_of(result.stdout)
    assert set(counted) == set(TABLES)
    assert all(a == b > 0 for a, b in counted.values())
    assert rows_at(tmp_path / "target.db") == rows_at(source)


def test_copy_refuses_a_target_that_holds_rows_and_leaves_it_as_it_was(tmp_path):
    source = filled_store(tmp_path / "source.db")
    with Store.open(tmp_path / "target.db") as target:
        target.add(RUNNER)
    before = rows_at(tmp_path / "target.db")

    result = run("db", "copy", f"sqlite:///{source}", f"sqlite:///{tmp_path / 'target.db'}")

    assert_user_error(result, f"TARGET_URL: error: sqlite:///{tmp_path / 'target.db'} already "
                      "holds rows (subscribers 1, audit 1); pass --force to replace them\n"
                      "1 error\n")
    assert rows_at(tmp_path / "target.db") == before


def test_copy_with_force_replaces_the_rows_of_the_target(tmp_path):
    source = filled_store(tmp_path / "source.db")
    with Store.open(tmp_path / "target.db") as target:
        target.add(RUNNER)

    result = run("db", "copy", "--force", f"sqlite:///{source}",
                 f"sqlite:///{tmp_path / 'target.db'}")

    assert result.exit_code == 0, result.output
    assert rows_at(tmp_path / "target.db") == rows_at(source)


def test_copy_refuses_to_copy_a_store_onto_itself(project_dir):
    filled_store(project_dir / STORE)

    result = run("db", "copy", f"sqlite:///{STORE}", f"sqlite:///{project_dir / STORE}")

    assert_user_error(result, "TARGET_URL: error: the same store as SOURCE_URL "
                      f"(sqlite:///{project_dir / STORE}); copy to another one\n1 error\n")


def test_copy_refuses_a_source_that_does_not_exist_and_makes_no_file(tmp_path):
    missing = tmp_path / "missing.db"

    result = run("db", "copy", f"sqlite:///{missing}", f"sqlite:///{tmp_path / 'target.db'}")

    assert_user_error(result, f"SOURCE_URL: error: no store at {missing}\n1 error\n")
    assert not missing.exists()


def test_a_relative_sqlite_path_is_the_projects_even_from_a_subfolder(project_dir,
                                                                      monkeypatch):
    filled_store(project_dir / STORE)
    monkeypatch.chdir(project_dir / "content")

    result = run("db", "copy", f"sqlite:///{STORE}", "sqlite:///copy.db")

    assert result.exit_code == 0, result.output
    assert rows_at(project_dir / "copy.db") == rows_at(project_dir / STORE)


def test_copy_from_sqlite_to_postgresql_and_back_keeps_every_row(tmp_path, postgres_url):
    source = filled_store(tmp_path / "source.db")

    there = run("db", "copy", f"sqlite:///{source}", postgres_url)
    back = run("db", "copy", postgres_url, f"sqlite:///{tmp_path / 'back.db'}")

    assert there.exit_code == 0, there.output
    assert back.exit_code == 0, back.output
    assert rows_at(tmp_path / "back.db") == rows_at(source)
    assert rows_at(postgres_url) == rows_at(source)


def test_readers_copied_to_postgresql_are_read_there_and_a_new_one_gets_a_fresh_id(
        tmp_path, postgres_url):
    source = filled_store(tmp_path / "source.db")
    with Store.open(source) as store:
        copied = {r.email: r.id for r in store.list()}

    run("db", "copy", f"sqlite:///{source}", postgres_url)

    with Store.open(postgres_url) as target:
        assert {email: target.get(email).id for email in copied} == copied
        assert target.add(RUNNER).id == max(copied.values()) + 1
        assert target.history(RUNNER)[0].new_status == "active"


def test_a_failed_copy_to_postgresql_leaves_the_target_as_it_was(tmp_path, postgres_url):
    source = filled_store(tmp_path / "source.db")
    with Store.open(source) as store, store.transaction() as conn:
        # SQLite keeps a NUL in text; PostgreSQL refuses it: the copy fails at the last table.
        conn.execute("INSERT INTO serve_webhook_seen(provider, token, at) "
                     "VALUES ('postmark', :token, 1000.0)", {"token": "bad\x00token"})
    with Store.open(postgres_url) as target:
        target.add(RUNNER)
    before = rows_at(postgres_url)

    result = run("db", "copy", "--force", f"sqlite:///{source}", postgres_url)

    *progress, failure, summary = result.stderr.splitlines()
    assert_user_error(result, result.stderr)
    assert failure.startswith("postgresql+psycopg://runletter@")
    assert ": error: copying serve_webhook_seen failed, so nothing was copied: " in failure
    assert summary == "1 error"
    assert rows_at(postgres_url) == before


def test_a_password_in_a_url_on_the_command_line_is_refused_and_never_printed(tmp_path):
    source = filled_store(tmp_path / "source.db")
    port = free_port()

    result = run("db", "copy", f"sqlite:///{source}",
                 f"postgresql://runletter:s3cret-pw@{HOST}:{port}/runletter")

    assert_user_error(result, "TARGET_URL: error: "
                      f"postgresql://runletter:***@{HOST}:{port}/runletter holds a password; "
                      "passwords come only from the environment: remove it and set PGPASSWORD "
                      "(or a ~/.pgpass line)\n1 error\n")


def test_a_url_on_the_command_line_takes_its_password_from_the_environments_same_url(
        tmp_path, monkeypatch):
    monkeypatch.setenv("RUNLETTER_DATABASE_URL",
                       f"postgresql://runletter:s3cret-pw@{HOST}:5432/runletter")

    url = given_url(f"postgresql://runletter@{HOST}:5432/runletter", tmp_path, "TARGET_URL")

    assert url == f"postgresql+psycopg://runletter:s3cret-pw@{HOST}:5432/runletter"
