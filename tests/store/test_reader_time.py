"""Readers' race date, race name and time zone: kept by the store, given by `subscribers add`,
carried by CSV export and import; and a reader's signup time is their consent time."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from publisher import clock
from publisher.arrivals import ArrivalOptions, import_file
from publisher.errors import RunletterError
from publisher.store import EXPORT_COLUMNS, Store
from tests.helpers.support import assert_user_error, project_store, run, write_csv
from tests.samples import GOALS, ON_BOTH_BACKENDS, RACE_DATE, RACE_NAME, ZONE

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets

RACE_HEADER = "email,goal,race_date,race_name,timezone\n"  # a hand-written readers CSV
NOT_A_DATE = ("race_date '2027-02-30' is not a date; write it as YYYY-MM-DD, "
              "e.g. 2027-03-28")
OUT_OF_RANGE = ("race_date 9999-12-31 is outside the dates Runletter handles (1900-01-01 to "
                "2199-12-31); give one in that range")
NOT_A_ZONE = ("timezone 'Europe/Madird' is not an IANA time zone (did you mean "
              "'Europe/Madrid'?), e.g. Europe/Madrid or America/New_York")


def race_of(store: Store, email: str) -> tuple[str | None, str, str]:
    """(race_date, race_name, timezone) of a stored reader."""
    reader = store.get(email)
    return reader.race_date, reader.race_name, reader.timezone


def with_race(store: Store, email: str = "ana@example.com"):
    """A reader added with the race and zone of conftest."""
    return store.add(email, goal="marathon", race_date=RACE_DATE, race_name=RACE_NAME,
                     timezone=ZONE)


def message_of(caught: pytest.ExceptionInfo[RunletterError]) -> str:
    [finding] = caught.value.findings
    return finding.message


# -- the store ----------------------------------------------------------------------------------


def test_add_stores_a_race_date_race_name_and_timezone(store):
    added = with_race(store)
    assert (added.race_date, added.race_name, added.timezone) == (RACE_DATE, RACE_NAME, ZONE)
    assert race_of(store, "ana@example.com") == (RACE_DATE, RACE_NAME, ZONE)


def test_add_refuses_a_race_date_that_is_not_a_date_and_stores_nothing(store):
    with pytest.raises(RunletterError) as caught:
        store.add("ana@example.com", race_date="2027-02-30")
    assert message_of(caught) == NOT_A_DATE
    assert store.get("ana@example.com") is None


def test_add_refuses_a_race_date_in_year_9999_and_stores_nothing(store):
    with pytest.raises(RunletterError) as caught:
        store.add("ana@example.com", race_date="9999-12-31")
    assert message_of(caught) == OUT_OF_RANGE
    assert store.get("ana@example.com") is None


def test_add_refuses_an_unknown_timezone_with_the_closest_zone(store):
    with pytest.raises(RunletterError) as caught:
        store.add("ana@example.com", timezone="Europe/Madird")
    assert message_of(caught) == NOT_A_ZONE
    assert store.get("ana@example.com") is None


def test_add_refuses_a_race_name_with_a_line_break(store):
    with pytest.raises(RunletterError, match="race_name contains a line break"):
        store.add("ana@example.com", race_name="Valencia\nBcc: all@example.com")


def test_update_changes_the_race_fields_and_none_leaves_each_as_it_is(store):
    with_race(store)
    changed = store.update("ana@example.com", race_date="2027-10-10")
    assert (changed.race_date, changed.race_name, changed.timezone) == (
        "2027-10-10", RACE_NAME, ZONE)
    store.update("ana@example.com", race_name="Berlin Marathon", timezone="Europe/Berlin")
    assert race_of(store, "ana@example.com") == ("2027-10-10", "Berlin Marathon",
                                                 "Europe/Berlin")


def test_update_with_empty_strings_clears_race_date_race_name_and_timezone(store):
    with_race(store)
    store.update("ana@example.com", race_date="", race_name="", timezone="")
    assert race_of(store, "ana@example.com") == (None, "", "")


def test_update_refuses_an_impossible_race_date_and_changes_nothing(store):
    with_race(store)
    with pytest.raises(RunletterError) as caught:
        store.update("ana@example.com", race_date="2027-02-30", race_name="Other")
    assert message_of(caught) == NOT_A_DATE
    assert race_of(store, "ana@example.com") == (RACE_DATE, RACE_NAME, ZONE)


def test_a_confirmed_signups_signup_time_is_the_time_of_the_confirmation(store):
    with clock.pinned(datetime(2027, 1, 5, 8, 0, tzinfo=UTC)):
        reader = store.add("ana@example.com", status="pending")
    with clock.pinned(datetime(2027, 1, 6, 9, 30, tzinfo=UTC)):
        store.confirm(reader.id, issued=0.0, source="signup form", ip=None)
    assert store.get("ana@example.com").signed_up == "2027-01-06T09:30:00+00:00"


# -- CSV export and import ------------------------------------------------------------------


def exported(store: Store) -> str:
    out = io.StringIO()
    store.export_csv(out)
    return out.getvalue()


def test_the_export_ends_with_race_date_race_name_and_timezone_columns(store):
    with_race(store)
    rows = list(csv.reader(io.StringIO(exported(store))))
    assert EXPORT_COLUMNS[-3:] == ("race_date", "race_name", "timezone") == tuple(rows[0][-3:])
    assert rows[1][-3:] == [RACE_DATE, RACE_NAME, ZONE]


def test_an_export_with_race_fields_imports_back_into_a_new_store_as_it_was(store, tmp_path):
    with_race(store)
    store.add("bo@example.com", race_name="=Club 10K")  # a formula cell, neutralised
    first = exported(store)
    path = write_csv(tmp_path, first, "export.csv")
    with Store.open(tmp_path / "fresh.db") as fresh:
        report = fresh.import_csv(path, GOALS)
        assert (report.added, report.findings) == (2, ())
        assert race_of(fresh, "ana@example.com") == (RACE_DATE, RACE_NAME, ZONE)
        assert race_of(fresh, "bo@example.com") == (None, "=Club 10K", "")
        assert exported(fresh) == first


@pytest.mark.parametrize(("cells", "problem"), [
    ("2027-02-30,,", NOT_A_DATE),
    (",,Europe/Madird", NOT_A_ZONE),
    (f",{'x' * 121},", "race_name is 121 characters long; the limit is 120"),
    ("9999-12-31,,", OUT_OF_RANGE)])
def test_a_bad_race_or_zone_cell_is_reported_by_file_and_line_and_the_row_skipped(
        store, tmp_path, cells, problem):
    path = write_csv(tmp_path, RACE_HEADER + "good@example.com,5k,,,\n"
                     f"bad@example.com,5k,{cells}\n")
    report = store.import_csv(path, GOALS, display="readers.csv")
    assert (report.added, report.skipped) == (1, 1)
    assert [str(f) for f in report.findings] == [f"readers.csv:3: {problem} "
                                                 "(row skipped)"]
    assert store.get("bad@example.com") is None


def test_a_reader_imported_again_gets_the_files_race_fields(store, tmp_path):
    store.add("ana@example.com", goal="marathon", race_name="Old race")
    path = write_csv(tmp_path, RACE_HEADER + f"ana@example.com,marathon,{RACE_DATE},"
                     f"{RACE_NAME},{ZONE}\n")
    report = store.import_csv(path, GOALS)
    assert (report.updated, report.findings) == (1, ())
    assert race_of(store, "ana@example.com") == (RACE_DATE, RACE_NAME, ZONE)


def test_blank_race_cells_of_runletters_csv_clear_the_fields(store, tmp_path):
    with_race(store)
    store.import_csv(write_csv(tmp_path, RACE_HEADER + "ana@example.com,marathon,,,\n"), GOALS)
    assert race_of(store, "ana@example.com") == (None, "", "")


def test_a_file_without_race_columns_leaves_a_readers_race_fields(store, tmp_path):
    with_race(store)
    store.import_csv(write_csv(tmp_path, "email,first_name\nana@example.com,Ana\n"), GOALS)
    assert race_of(store, "ana@example.com") == (RACE_DATE, RACE_NAME, ZONE)


def test_an_imported_readers_signup_time_is_the_files_consent_time(store, tmp_path):
    path = write_csv(tmp_path, "email,consent_at\nana@example.com,2024-05-01T07:00:00+00:00\n")
    store.import_csv(path, GOALS)
    assert store.get("ana@example.com").signed_up == "2024-05-01T07:00:00+00:00"


def test_an_unknown_signup_time_stays_unknown_through_export_and_import(store, tmp_path):
    store.import_csv(write_csv(tmp_path, "email\nana@example.com\n"), GOALS)
    first = exported(store)
    assert next(csv.DictReader(io.StringIO(first)))["consent_at"] == ""
    with Store.open(tmp_path / "fresh.db") as fresh:
        fresh.import_csv(write_csv(tmp_path, first, "export.csv"), GOALS)
        assert fresh.get("ana@example.com").signed_up is None


def test_map_reads_race_date_race_name_and_timezone_from_another_tools_columns(store,
                                                                               tmp_path):
    path = write_csv(tmp_path, "email_address,state,Race Day,Race,Zone\n"
                     f"ana@example.com,active,{RACE_DATE},{RACE_NAME},{ZONE}\n", "kit.csv")
    options = ArrivalOptions(maps=("Race Day=race_date", "Race=race_name", "Zone=timezone"))
    report = import_file(store, path, GOALS, options)
    assert (report.added, report.findings) == (1, ())
    assert race_of(store, "ana@example.com") == (RACE_DATE, RACE_NAME, ZONE)


# -- `runletter subscribers add` ------------------------------------------------------------


def test_subscribers_add_stores_the_race_date_race_name_and_timezone(project_dir):
    result = run("subscribers", "add", "ana@example.com", "--race-date", RACE_DATE,
                 "--race-name", RACE_NAME, "--timezone", ZONE)
    assert result.exit_code == 0, result.output
    with project_store(project_dir) as store:
        assert race_of(store, "ana@example.com") == (RACE_DATE, RACE_NAME, ZONE)


@pytest.mark.parametrize(("flag", "value", "problem"), [
    ("--race-date", "2027-02-30", NOT_A_DATE),
    ("--timezone", "Europe/Madird", NOT_A_ZONE)])
def test_subscribers_add_refuses_a_bad_value_in_one_line_naming_the_flag(project_dir, flag,
                                                                         value, problem):
    field = problem.split(" ", 1)[0]
    assert_user_error(run("subscribers", "add", "ana@example.com", flag, value),
                      f"runletter: error: {problem.replace(field, flag, 1)}\n1 error\n")
    assert run("subscribers", "export").stdout.count("\n") == 1  # the header only
