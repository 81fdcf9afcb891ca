"""Arrivals: readers brought from Mailchimp, Substack, Ghost, listmonk, Buttondown and Kit
exports (tests/fixtures/imports, described in FORMATS.md), with every opt-out kept."""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.arrivals import ArrivalOptions, import_file
from publisher.content.posts import load_goals
from publisher.errors import RunletterError
from publisher.store import LEFT, Store
from tests.helpers.support import open_store, project_store, sqlite_only, store_rows, write_csv
from tests.samples import FAST, ON_BOTH_BACKENDS, REPO

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets

FIXTURES = Path(__file__).parents[1] / "fixtures" / "imports"
GOALS = load_goals(REPO / "subscribers/goals.toml", REPO)
OTHER_TOOL_MAP = ("E-mail=email", "Given name=first_name", "Race Distance=goal", "Groups=tags")


def arrive(store: Store, name: str, **options) -> object:
    """Import a fixture (or a path) with the given options."""
    path = name if isinstance(name, Path) else FIXTURES / name
    return import_file(store, path, GOALS, ArrivalOptions(**options), display=path.name)


def status_of(store: Store, email: str) -> str:
    return store.get(email).status


# -- every fixture: the counts FORMATS.md expects ------------------------------------------

EXPECTED = {  # file: (format, imported, skipped line, statuses, goals)
    "mailchimp_subscribed.csv": ("mailchimp", 9, 10, {"active": 9}, {
        "5k": 1, "10k": 2, "half": 1, "marathon": 2, "ultra": 1, "comeback": 1, "general": 1}),
    "mailchimp_unsubscribed.csv": ("mailchimp", 5, 7, {"unsubscribed": 5}, {
        "5k": 1, "half": 1, "marathon": 1, "ultra": 1, "general": 1}),
    "mailchimp_cleaned.csv": ("mailchimp", 5, 7, {"bounced": 5}, {
        "5k": 1, "10k": 1, "half": 1, "comeback": 1, "general": 1}),
    "substack.csv": ("substack", 8, 9, {"active": 6, "unsubscribed": 2}, {"general": 8}),
    "substack_email_list.csv": ("substack", 6, 8, {"active": 5, "unsubscribed": 1},
                                {"general": 6}),
    "ghost.csv": ("ghost", 9, 9, {"active": 7, "unsubscribed": 2}, {"general": 9}),
    "listmonk.csv": ("listmonk", 9, 10, {"active": 7, "unsubscribed": 2}, {
        "5k": 1, "10k": 1, "half": 2, "marathon": 1, "ultra": 1, "comeback": 1, "general": 2}),
    "listmonk_unknown_state.csv": ("listmonk", 2, 3, {"active": 1, "unsubscribed": 1},
                                   {"marathon": 1, "general": 1}),
    "buttondown.csv": ("buttondown", 11, 13, {
        "active": 6, "pending": 1, "unsubscribed": 2, "complained": 1, "bounced": 1}, {
        "5k": 1, "10k": 1, "half": 2, "marathon": 2, "ultra": 1, "comeback": 1, "general": 3}),
    "buttondown_unknown_type.csv": ("buttondown", 2, 3, {"active": 1, "unsubscribed": 1},
                                    {"marathon": 1, "ultra": 1}),
    "kit.csv": ("kit", 9, 10, {
        "active": 5, "pending": 1, "unsubscribed": 1, "bounced": 1, "complained": 1}, {
        "5k": 1, "10k": 2, "half": 1, "marathon": 2, "ultra": 1, "comeback": 1, "general": 1}),
    "kit_unknown_state.csv": ("kit", 2, 3, {"active": 1, "unsubscribed": 1},
                              {"marathon": 1, "ultra": 1}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_export_is_detected_and_lands_the_counts_formats_md_gives(store, name):
    fmt, imported, skipped_line, statuses, goals = EXPECTED[name]
    report = arrive(store, name)
    assert report.plan.format.name == fmt
    assert report.format_line().startswith(f"detected format: {fmt} (from the header)")
    assert (report.added, report.skipped) == (imported, 1)
    assert [f.line for f in report.errors] == [skipped_line]
    assert (report.statuses, report.goals) == (statuses, goals)
    stored = list(store.list())
    assert len(stored) == imported
    assert sum(s.status == "active" for s in stored) == statuses.get("active", 0)


def test_a_spreadsheet_from_an_unlisted_tool_lands_with_its_columns_mapped(store):
    report = arrive(store, "other_tool.csv", maps=OTHER_TOOL_MAP)
    assert (report.added, [f.line for f in report.errors]) == (7, [8])
    assert report.statuses == {"active": 7}
    assert report.goals == {"5k": 1, "10k": 1, "half": 1, "marathon": 1, "ultra": 1,
                            "comeback": 1, "general": 1}
    marit = store.get("marit.solberg@example.com")
    assert (marit.first_name, marit.goal, marit.tags) == ("Marit", "marathon",
                                                          ("Road", "Masters 40+"))
    assert "Coach notes" in report.plan.ignored


# -- statuses: each tool's values ------------------------------------------------------------


@pytest.mark.parametrize(("email", "status"), [
    ("zoe.marchetti@example.com", "active"), ("lukasz.wojcik@example.org", "active"),
    ("freja.sorensen@example.net", "active"), ("jose.alvarez@example.com", "active"),
    ("aiko.kitamura@example.org", "active"), ("siobhan.oneill@example.com", "pending"),
    ("mateus.conceicao@example.net", "unsubscribed"), ("amara.okafor@example.com",
                                                       "unsubscribed"),
    ("bjorn.lindqvist@example.org", "complained"), ("ingrid.haugen@example.net", "bounced"),
    ("noe.dubois@example.com", "active")])
def test_a_buttondown_subscriber_type_becomes_its_status(store, email, status):
    arrive(store, "buttondown.csv")
    assert status_of(store, email) == status


@pytest.mark.parametrize(("email", "status"), [
    ("zoe.marchetti@example.com", "active"), ("lukasz.wojcik@example.org", "active"),
    ("freja.sorensen@example.net", "pending"), ("jose.alvarez@example.com", "unsubscribed"),
    ("aiko.kitamura@example.org", "bounced"), ("siobhan.oneill@example.com", "complained")])
def test_a_kit_subscriber_state_becomes_its_status(store, email, status):
    arrive(store, "kit.csv")
    assert status_of(store, email) == status


@pytest.mark.parametrize(("email", "status"), [
    ("zoe.marchetti@example.com", "active"), ("jose.alvarez@example.com", "unsubscribed"),
    ("mateus.conceicao@example.net", "unsubscribed")])
def test_listmonk_disabled_and_blocklisted_subscribers_arrive_unsubscribed(store, email, status):
    arrive(store, "listmonk.csv")
    assert status_of(store, email) == status


def test_a_ghost_export_with_email_disabled_is_read_as_ghost_and_the_address_as_bounced(
        store, tmp_path):
    path = write_csv(tmp_path, "id,email,name,subscribed_to_emails,email_disabled,labels\n"
                     "1,b@example.com,Bo,true,true,\n2,k@example.com,Kay,true,false,\n",
                     "members.csv")
    report = arrive(store, path)
    assert report.plan.format.name == "ghost"
    assert (status_of(store, "b@example.com"), status_of(store, "k@example.com")) == (
        "bounced", "active")


def test_ghost_members_not_subscribed_to_emails_arrive_unsubscribed(store):
    arrive(store, "ghost.csv")
    left = sorted(s.email for s in store.list(status="unsubscribed"))
    assert left == ["freja.sorensen@example.net", "siobhan.oneill@example.com"]


def test_a_ghost_member_with_a_deletion_time_arrives_unsubscribed(store, tmp_path):
    path = write_csv(tmp_path, "id,email,name,subscribed_to_emails,deleted_at\n"
                     "1,gone@example.com,Gone,true,2024-05-01T10:00:00.000Z\n", "members.csv")
    arrive(store, path)
    assert status_of(store, "gone@example.com") == "unsubscribed"


def test_substack_readers_with_emails_disabled_arrive_unsubscribed(store):
    arrive(store, "substack.csv")
    assert sorted(s.email for s in store.list(status="unsubscribed")) == [
        "olaf.berg@example.net", "priya.raman@example.com"]
    assert status_of(store, "helga.jonsdottir@example.org") == "active"


def test_a_substack_reader_deleted_on_request_is_left_out_with_a_warning(store, tmp_path):
    path = write_csv(tmp_path, "email,expiry,email_disabled,stripe_connected_customer_id,type\n"
                     "kept@example.com,,false,,free\n"
                     "x7f3@deletion-request.substack.com,,false,,free\n", "substack.csv")
    report = arrive(store, path)
    assert [s.email for s in store.list()] == ["kept@example.com"]
    assert [(f.line, f.level) for f in report.findings] == [(3, "warning")]
    assert (report.skipped, report.left_out) == (0, 1)


@pytest.mark.parametrize(("name", "status"), [("mailchimp_unsubscribed.csv", "unsubscribed"),
                                              ("mailchimp_cleaned.csv", "bounced")])
def test_every_row_of_a_mailchimp_unsubscribed_or_cleaned_export_keeps_that_status(
        store, name, status):
    arrive(store, name)
    assert {s.status for s in store.list()} == {status}


def test_a_mailchimp_nonsubscribed_export_is_refused_without_a_status(store, tmp_path):
    path = tmp_path / "nonsubscribed_members_export_1a2b3c.csv"
    shutil.copy(FIXTURES / "mailchimp_subscribed.csv", path)
    with pytest.raises(RunletterError, match="never opted in.*--status pending"):
        arrive(store, path)
    assert list(store.list()) == []


def test_a_mailchimp_nonsubscribed_export_with_status_pending_arrives_pending(store, tmp_path):
    path = tmp_path / "nonsubscribed_members_export_1a2b3c.csv"
    shutil.copy(FIXTURES / "mailchimp_subscribed.csv", path)
    arrive(store, path, status="pending")
    assert {s.status for s in store.list()} == {"pending"}


# -- unknown statuses: a row error that never suggests a more permissive value ----------------


@pytest.mark.parametrize(("name", "expected"), [
    ("kit_unknown_state.csv", "kit_unknown_state.csv:3: unknown kit status 'frozen' (known: "
     "active, cold, inactive, cancelled, bounced, complained) (row skipped)"),
    ("listmonk_unknown_state.csv", "listmonk_unknown_state.csv:3: unknown listmonk status "
     "'paused' (known: enabled, disabled, blocklisted) (row skipped)")])
def test_an_unknown_status_is_a_row_error_listing_the_known_values(store, name, expected):
    report = arrive(store, name)
    assert [str(f) for f in report.errors] == [expected]


@pytest.mark.parametrize("value", ["unactivated", "inactive", "unactive", "deactivated"])
def test_an_unknown_status_never_suggests_active(store, tmp_path, value):
    path = write_csv(tmp_path, f"email,status\nr@example.com,{value}\n")
    report = arrive(store, path)
    [error] = report.errors
    assert f"unknown status '{value}'" in error.message
    assert "did you mean" not in error.message
    assert store.get("r@example.com") is None


def test_an_unknown_status_may_suggest_a_stricter_value(store, tmp_path):
    path = write_csv(tmp_path, "email,state\nr@example.com,canceled\n", "kit.csv")
    report = arrive(store, path, source="kit")
    assert "(did you mean 'cancelled'?)" in report.errors[0].message


def test_a_row_of_a_tool_export_without_a_status_is_an_error_not_an_active_reader(store,
                                                                                   tmp_path):
    path = write_csv(tmp_path, "first_name,email_address,state\nA,a@example.com,\n", "k.csv")
    report = arrive(store, path)
    assert "no kit status" in report.errors[0].message
    assert store.get("a@example.com") is None


# -- never re-activating -----------------------------------------------------------------------


@pytest.mark.parametrize("left", ["unsubscribed", "bounced", "complained"])
def test_an_export_saying_subscribed_never_reactivates_a_reader_who_left(store, left):
    store.add("zoe.marchetti@example.com", goal="5k")
    store.set_status("zoe.marchetti@example.com", left, "their choice")
    report = arrive(store, "mailchimp_subscribed.csv")
    assert status_of(store, "zoe.marchetti@example.com") == left
    assert [str(f) for f in report.warnings] == [
        f"mailchimp_subscribed.csv:2: zoe.marchetti@example.com: kept {left}; a reader who "
        "left must re-subscribe themselves"]
    assert report.statuses == {"active": 8, left: 1}


def test_an_export_saying_unconfirmed_never_makes_a_reader_who_left_pending(store):
    store.add("siobhan.oneill@example.com", status="unsubscribed")
    arrive(store, "buttondown.csv")
    assert status_of(store, "siobhan.oneill@example.com") == "unsubscribed"


def test_a_skipped_row_still_takes_a_stored_reader_off_the_list_when_it_says_they_left(
        store, tmp_path):
    store.add("gone@example.com", goal="5k")
    path = write_csv(tmp_path, "email_address,state,race_goal\n"
                     "gone@example.com,cancelled,Trail 50K\n", "kit.csv")
    report = arrive(store, path)
    assert report.skipped == 1
    assert status_of(store, "gone@example.com") == "unsubscribed"
    assert [str(f) for f in report.warnings] == [
        "kit.csv:2: gone@example.com: active until now, unsubscribed as this skipped row says"]
    assert report.opt_outs_kept == 1


def test_a_later_duplicate_saying_unsubscribed_keeps_the_opt_out(store, tmp_path):
    path = write_csv(tmp_path, "uuid,email,attributes,status\n1,a@example.com,{},enabled\n"
                     "2,A@example.com,{},blocklisted\n", "listmonk.csv")
    report = arrive(store, path)
    assert [f.line for f in report.errors] == [3]
    assert status_of(store, "a@example.com") == "unsubscribed"


def test_an_unsubscribed_export_unsubscribes_an_active_reader(store):
    store.add("kenji.sato@example.com", goal="ultra")
    arrive(store, "mailchimp_unsubscribed.csv")
    assert status_of(store, "kenji.sato@example.com") == "unsubscribed"
    last = store.history("kenji.sato@example.com")[-1]
    assert (last.old_status, last.new_status, last.reason) == (
        "active", "unsubscribed", "imported from mailchimp_unsubscribed.csv:6")


# -- --status and --goal -----------------------------------------------------------------------


def test_status_option_gives_a_suppression_list_its_status(store, tmp_path):
    path = write_csv(tmp_path, "email\nhard@example.com\nsoft@example.org\n", "bounces.csv")
    report = arrive(store, path, status="bounced")
    assert report.statuses == {"bounced": 2}
    assert {s.status for s in store.list()} == {"bounced"}


def test_status_option_never_makes_a_row_more_permissive_than_its_file_says(store):
    arrive(store, "mailchimp_unsubscribed.csv", status="active")
    assert {s.status for s in store.list()} == {"unsubscribed"}


def test_status_option_makes_the_subscribed_rows_of_an_export_stricter(store):
    arrive(store, "substack.csv", status="pending")
    assert {s.email: s.status for s in store.list()}["priya.raman@example.com"] == "unsubscribed"
    assert sorted({s.status for s in store.list()}) == ["pending", "unsubscribed"]


def test_goal_option_sets_the_goal_of_rows_without_one(store):
    arrive(store, "mailchimp_subscribed.csv", goal="Ultra")
    assert store.get("mateus.conceicao@example.net").goal == "ultra"  # his cell is empty
    assert store.get("zoe.marchetti@example.com").goal == "half"


def test_an_unknown_goal_option_is_refused_before_anything_lands(store):
    with pytest.raises(RunletterError, match=r"--goal: unknown goal 'maraton' \(did you mean "
                                             r"'marathon'\?\)"):
        arrive(store, "kit.csv", goal="maraton")
    assert list(store.list()) == []


# -- names, tags, goals, consent -----------------------------------------------------------------


def test_a_full_name_gives_its_first_word_as_first_name(store):
    arrive(store, "ghost.csv")
    assert store.get("zoe.marchetti@example.com").first_name == "Zoë"
    assert store.get("aiko.kitamura@example.org").first_name == "北村愛子"
    assert store.get("mateus.conceicao@example.net").first_name == ""


def test_a_first_name_column_wins_over_a_full_name_column(store, tmp_path):
    path = write_csv(tmp_path, "email_address,state,name,first_name\n"
                     "a@example.com,active,Alexandra Berg,Sasha\n"
                     "b@example.com,active,Bo Lind,\n", "kit.csv")
    arrive(store, path)
    assert [s.first_name for s in store.list()] == ["Sasha", "Bo"]


@pytest.mark.parametrize(("name", "email", "tags"), [
    ("mailchimp_subscribed.csv", "zoe.marchetti@example.com", ("Road", "Masters 40+")),
    ("ghost.csv", "aiko.kitamura@example.org", ("Trail", "日本")),
    ("kit.csv", "amara.okafor@example.com", ("Road", "Run club leader")),
    ("buttondown.csv", "freja.sorensen@example.net", ("track", "parkrun"))])
def test_tags_are_split_the_way_each_tool_writes_them(store, name, email, tags):
    arrive(store, name)
    assert store.get(email).tags == tags


def test_a_mailchimp_tag_holding_a_comma_stays_one_tag(store, tmp_path):
    path = write_csv(tmp_path, '"Email Address",MEMBER_RATING,TAGS\n'
                     'a@example.com,2,"""Road, hills"",""Track"""\n', "subscribed.csv")
    arrive(store, path)
    assert store.get("a@example.com").tags == ("Road, hills", "Track")


@pytest.mark.parametrize(("name", "email", "goal"), [
    ("listmonk.csv", "amara.okafor@example.com", "half"),  # "Half Marathon"
    ("mailchimp_subscribed.csv", "amara.okafor@example.com", "marathon"),  # "marathon"
    ("kit.csv", "siobhan.oneill@example.com", "comeback"),  # "Comeback from injury"
    ("buttondown.csv", "freja.sorensen@example.net", "10k")])  # "10K" in metadata
def test_a_goal_matches_by_slug_or_label_in_any_case(store, name, email, goal):
    arrive(store, name)
    assert store.get(email).goal == goal


def test_consent_keeps_the_format_file_and_opt_in_time(store):
    arrive(store, "mailchimp_subscribed.csv")
    zoe = store.get("zoe.marchetti@example.com")
    assert (zoe.consent_source, zoe.consent_at) == (
        "import:mailchimp:mailchimp_subscribed.csv", "2023-03-02T18:06:12+00:00")
    assert store.get("jose.alvarez@example.com").consent_at == "2024-01-07T09:15:44+00:00"


@pytest.mark.parametrize(("name", "email", "when"), [
    ("listmonk.csv", "zoe.marchetti@example.com", "2024-01-13T07:42:10+00:00"),
    ("kit.csv", "zoe.marchetti@example.com", "2023-03-02T18:06:12+00:00"),
    ("ghost.csv", "zoe.marchetti@example.com", "2024-01-13T07:42:10+00:00"),
    ("buttondown.csv", "zoe.marchetti@example.com", "2023-03-02T18:06:12+00:00"),
    ("substack_email_list.csv", "marit.solberg@example.com", "2023-02-14T19:22:05+00:00")])
def test_each_tools_opt_in_time_is_stored_in_utc(store, name, email, when):
    arrive(store, name)
    assert store.get(email).consent_at == when


def test_a_file_without_an_opt_in_time_leaves_the_signup_time_unknown(store):
    arrive(store, "substack.csv")
    reader = store.get("marit.solberg@example.com")
    assert (reader.consent_at, reader.signed_up) == (None, None)


def test_an_opt_in_time_that_is_not_a_date_is_a_warning_and_the_row_lands(store, tmp_path):
    path = write_csv(tmp_path, "email_address,state,created_at\n"
                     "a@example.com,active,03/02/2023\nb@example.com,active,yesterday\n",
                     "kit.csv")
    report = arrive(store, path)
    assert report.added == 2
    assert [(f.line, f.level) for f in report.findings] == [(2, "warning")]
    assert "(and 1 more rows)" in report.findings[0].message


def test_metadata_that_is_not_json_is_a_warning_and_the_row_keeps_its_status(store, tmp_path):
    path = write_csv(tmp_path, "email_address,creation_date,type,metadata\n"
                     "u@example.com,2023-03-02T18:06:12Z,unsubscribed,{'goal': 'half'}\n",
                     "buttondown.csv")
    report = arrive(store, path)
    assert status_of(store, "u@example.com") == "unsubscribed"
    assert [(f.line, f.level) for f in report.findings] == [(2, "warning")]
    assert report.findings[0].message.startswith("metadata is not a JSON object")


def test_tags_written_as_a_json_list_are_read_as_a_list(store, tmp_path):
    path = write_csv(tmp_path, 'email_address,state,tags\na@example.com,active,"[""Road"", '
                     '""Masters 40+""]"\n', "kit.csv")
    arrive(store, path)
    assert store.get("a@example.com").tags == ("Road", "Masters 40+")


# -- --map -------------------------------------------------------------------------------------


def test_map_names_a_goal_column_a_tool_does_not_know(store, tmp_path):
    path = write_csv(tmp_path, "email_address,state,Distance\na@example.com,active,Half "
                     "Marathon\n", "kit.csv")
    arrive(store, path, maps=("Distance=goal",))
    assert store.get("a@example.com").goal == "half"


def test_map_of_a_column_the_file_lacks_suggests_the_closest(store):
    with pytest.raises(RunletterError, match=r"no column 'Race Distanse' \(did you mean "
                                             r"'Race Distance'\?\)"):
        arrive(store, "other_tool.csv", maps=("Race Distanse=goal", "E-mail=email"))


def test_map_written_field_first_says_which_way_round(store):
    with pytest.raises(RunletterError, match=r'did you mean --map "E-mail=email"'):
        arrive(store, "other_tool.csv", maps=("email=E-mail",))


def test_map_of_a_status_column_reads_the_formats_own_values(store, tmp_path):
    path = write_csv(tmp_path, "uuid,email,attributes,status,list_state\n"
                     "1,a@example.com,{},enabled,blocklisted\n", "listmonk.csv")
    arrive(store, path, maps=("list_state=status",))
    assert status_of(store, "a@example.com") == "unsubscribed"


# -- detection ---------------------------------------------------------------------------------


def test_a_file_no_format_recognises_is_refused_with_a_hint(store):
    with pytest.raises(RunletterError) as caught:
        arrive(store, "other_tool.csv")
    assert [str(f) for f in caught.value.findings] == [
        "other_tool.csv:1: not a layout runletter knows (it reads mailchimp, ghost, substack, "
        "listmonk, buttondown, kit, runletter; columns here: E-mail, Given name, Family name, "
        "Race Distance, Groups, Opted in?, Signed up on, Coach notes); name the columns with "
        "--map, e.g. --map \"E-mail=email\", or pass --from FORMAT (nothing imported)"]
    assert list(store.list()) == []


def test_from_names_the_format_when_the_header_alone_cannot(store, tmp_path):
    path = write_csv(tmp_path, "email,status\na@example.com,blocklisted\n", "l.csv")
    report = arrive(store, path, source="listmonk")
    assert report.format_line() == "format: listmonk (--from listmonk)"
    assert status_of(store, "a@example.com") == "unsubscribed"


# -- dry run, streaming, export round trip -----------------------------------------------------


def test_a_dry_run_writes_nothing_and_reports_what_would_land(store):
    store.add("kenji.sato@example.com")
    before = store_rows(store)
    report = arrive(store, "mailchimp_unsubscribed.csv", dry_run=True)
    assert (report.added, report.updated, report.skipped) == (4, 1, 1)
    assert report.statuses == {"unsubscribed": 5}
    assert store_rows(store) == before
    assert store.history("kenji.sato@example.com")[-1].new_status == "active"


def test_a_byte_that_is_not_utf8_far_into_a_file_names_its_line_and_imports_nothing(
        store, tmp_path):
    path = tmp_path / "big.csv"
    rows = "".join(f"r{i}@example.com,R,5k,,\n" for i in range(20_000))
    path.write_bytes(b"email,first_name,goal,tags,status\n" + rows.encode()
                     + "late@example.com,Zoë,half,,\n".encode("latin-1"))
    with pytest.raises(RunletterError, match=r"^big\.csv:20002: not UTF-8 text"):
        arrive(store, path)
    assert list(store.list()) == []


def test_an_export_holds_every_stored_field_and_imports_back_identically(store, tmp_path):
    arrive(store, "buttondown.csv")
    store.add("ip@example.com", consent_source="signup", consent_ip="192.0.2.7")
    first = io.StringIO()
    store.export_csv(first)
    path = tmp_path / "export.csv"
    path.write_text(first.getvalue(), encoding="utf-8")
    with Store.open(tmp_path / "fresh.db") as fresh:
        report = import_file(fresh, path, GOALS, display="export.csv")
        assert (report.plan.format.name, report.findings) == ("runletter", ())
        again = io.StringIO()
        fresh.export_csv(again)
    assert again.getvalue() == first.getvalue()
    assert ',"signup","' in first.getvalue() and '"192.0.2.7"' in first.getvalue()


# -- the command -------------------------------------------------------------------------------


def run(*args: str):
    from click.testing import CliRunner

    from publisher.cli import main

    return CliRunner().invoke(main, ["subscribers", "import", *args])


def stored_readers(root: Path) -> dict[str, tuple[str, str, str]]:
    with project_store(root) as opened:
        return {s.email: (s.status, s.goal, s.first_name) for s in opened.list()}


def every_row(root: Path) -> list[str]:
    """Every row of the project's store, as text."""
    with project_store(root) as opened:
        return store_rows(opened)


def test_the_command_says_which_format_it_detected_and_names_bad_rows(sample_root):
    result = run(str(FIXTURES / "kit_unknown_state.csv"))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == "detected format: kit (from the header)"
    assert result.stderr == (f"{FIXTURES / 'kit_unknown_state.csv'}:3: error: unknown kit "
                             "status 'frozen' (known: active, cold, inactive, cancelled, "
                             "bounced, complained) (row skipped)\n1 error\n")
    assert stored_readers(sample_root)["kenji.sato@example.com"][0] == "unsubscribed"


def test_the_command_dry_run_prints_the_plan_and_leaves_the_store_as_it_was(sample_root):
    assert run("subscribers/sample.csv").exit_code == 0
    before = every_row(sample_root)
    result = run(str(FIXTURES / "mailchimp_unsubscribed.csv"), "--dry-run")
    assert result.exit_code == 1  # the duplicate on line 7 would be skipped
    lines = result.stdout.splitlines()
    assert lines[0] == ("detected format: mailchimp (from the header); file: unsubscribed "
                        "members (UNSUB_TIME): every row unsubscribed")
    assert lines[1:5] == ["columns:", "  Email Address → email", "  First Name → first_name",
                          "  Race Distance → goal"]
    assert lines[8].startswith("  ignored: Last Name, MEMBER_RATING, OPTIN_IP, ")
    assert lines[9:11] == ["status: unsubscribed 5",
                           "goal: 5k 1, general 1, half 1, marathon 1, ultra 1"]
    assert lines[-1].endswith("would be 5 added, 0 updated, 0 unchanged, 1 skipped; "
                              "nothing written")
    assert ":7: error: duplicate: Hannah.Muller@example.org is already on line 2" in result.stderr
    assert every_row(sample_root) == before
    assert "hannah.muller@example.org" not in stored_readers(sample_root)


@sqlite_only("a dry run with no SQLite file yet creates none")
def test_the_command_dry_run_without_a_store_creates_none(sample_root):
    result = run(str(FIXTURES / "ghost.csv"), "--dry-run")
    assert "status: active 7, unsubscribed 2" in result.stdout.splitlines()
    assert not (sample_root / "subscribers/runletter.db").exists()


def test_the_command_maps_columns_with_map(sample_root):
    result = run(str(FIXTURES / "other_tool.csv"), *(f"--map={m}" for m in OTHER_TOOL_MAP))
    assert result.stdout.splitlines()[0] == "format: runletter (columns named with --map)"
    assert stored_readers(sample_root)["noe.dubois@example.com"] == ("active", "5k", "Noé")


def test_the_command_gives_a_suppression_list_its_status(sample_root):
    Path("bounces.csv").write_text("email\nana@example.com\nnew@example.org\n")
    assert run("subscribers/sample.csv").exit_code == 0
    result = run("bounces.csv", "--status", "bounced")
    assert result.exit_code == 0, result.output
    readers = stored_readers(sample_root)
    assert (readers["ana@example.com"][0], readers["new@example.org"][0]) == ("bounced",
                                                                             "bounced")


def test_the_command_gives_rows_without_a_goal_the_goal_option(sample_root):
    Path("list.csv").write_text("email,first_name\nana@example.com,Ana\n")
    assert run("list.csv", "--goal", "Half Marathon").exit_code == 0
    assert stored_readers(sample_root)["ana@example.com"][1] == "half"


def test_the_command_reads_the_format_from_says(sample_root):
    Path("l.csv").write_text("email,status\nana@example.com,blocklisted\n")
    result = run("l.csv", "--from", "listmonk")
    assert result.stdout.splitlines()[0] == "format: listmonk (--from listmonk)"
    assert stored_readers(sample_root)["ana@example.com"][0] == "unsubscribed"


def test_the_command_refuses_an_unknown_format_on_one_line(sample_root):
    result = run(str(FIXTURES / "kit.csv"), "--from", "mailchimps")
    assert result.exit_code == 1
    assert result.stderr == ("runletter: error: --from 'mailchimps': unknown format (did you "
                             "mean 'mailchimp'?); formats: auto, mailchimp, ghost, substack, "
                             "listmonk, buttondown, kit, runletter\n1 error\n")


# -- the property: nothing lands active unless its source says subscribed ----------------------

# What the issue (and FORMATS.md) call subscribed, per format: the only values that may land
# active. Mailchimp says it with the file, not a value: only its subscribed export does.
SUBSCRIBED = {
    "substack": {"false"}, "ghost": {"true"}, "listmonk": {"enabled"},
    "buttondown": {"regular", "premium", "gifted", "churned", "trialed", "unpaid", "churning",
                   "paused", "past_due"},
    "kit": {"active", "cold"}, "runletter": {"active", ""}, "mailchimp": set(),
}
LAYOUTS = {  # header, where the address goes, where the status value goes
    "substack": (["email", "email_disabled", "type"], 0, 1),
    "ghost": (["id", "email", "subscribed_to_emails", "complimentary_plan", "deleted_at"], 1, 2),
    "listmonk": (["uuid", "email", "name", "attributes", "status"], 1, 4),
    "buttondown": (["id", "email_address", "creation_date", "type"], 1, 3),
    "kit": (["first_name", "email_address", "state"], 1, 2),
    "runletter": (["email", "status"], 0, 1),
    "mailchimp": (["Email Address", "MEMBER_RATING", "NOTES"], 0, 2),
}
MAILCHIMP_KINDS = {  # extra column, file name, whether its rows are subscribed
    "subscribed": ("LAST_CHANGED", "subscribed_members_export_1.csv", True),
    "unsubscribed": ("UNSUB_TIME", "unsubscribed_members_export_1.csv", False),
    "cleaned": ("CLEAN_TIME", "cleaned_members_export_1.csv", False),
    "nonsubscribed": ("LAST_CHANGED", "nonsubscribed_members_export_1.csv", False),
}
NOT_SUBSCRIBED = {  # the other values each tool writes, which must never land active
    "substack": {"true"}, "ghost": {"false"}, "listmonk": {"disabled", "blocklisted"},
    "buttondown": {"unactivated", "unsubscribed", "removed", "complained", "undeliverable",
                   "spammy", "malformed", "blocked", "disabled"},
    "kit": {"inactive", "cancelled", "bounced", "complained"},
    "runletter": {"pending", "unsubscribed", "bounced", "complained"}, "mailchimp": set(),
}


def status_values(fmt: str) -> st.SearchStrategy[str]:
    """The format's own values (as written, or shouted and padded) and any other text."""
    known = sorted(SUBSCRIBED[fmt] | NOT_SUBSCRIBED[fmt]) or [""]
    return st.one_of(
        st.sampled_from(known), st.sampled_from(known).map(lambda v: f" {v.upper()} "),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                max_size=12))  # one line per row


def export_text(fmt: str, values: list[str], deleted: list[bool], kind: str) -> tuple[str, str]:
    """A file of format `fmt` with one reader per value, and its name."""
    header, email_at, at = LAYOUTS[fmt]
    name = f"{fmt}.csv"
    if fmt == "mailchimp":
        column, name, _ = MAILCHIMP_KINDS[kind]
        header = [*header, column]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for number, (value, gone) in enumerate(zip(values, deleted, strict=True)):
        row = ["{}" if column == "attributes" else "" for column in header]
        row[email_at] = f"r{number}@example.com"
        row[at] = value
        if fmt == "ghost" and gone:
            row[4] = "2024-05-01T10:00:00.000Z"
        writer.writerow(row)
    return out.getvalue(), name


@sqlite_only("each example needs a fresh store: a SQLite file is copied in microseconds")
@pytest.mark.parametrize("fmt", sorted(LAYOUTS))
@FAST
@given(data=st.data())
def test_no_row_lands_active_unless_its_source_says_subscribed(fmt, data):
    count = data.draw(st.integers(min_value=1, max_value=8))
    values = data.draw(st.lists(status_values(fmt), min_size=count, max_size=count))
    deleted = data.draw(st.lists(st.booleans(), min_size=count, max_size=count))
    # Mostly new readers and no --status, where a wrong mapping shows; the rest checks that
    # stored leavers stay gone and that --status only ever tightens.
    before = data.draw(st.lists(st.sampled_from([None] * 4 + [
        "active", "pending", "unsubscribed", "bounced", "complained"]),
        min_size=count, max_size=count))
    kind = data.draw(st.sampled_from(sorted(MAILCHIMP_KINDS)))
    status = data.draw(st.sampled_from([None] * 4 + ["active", "pending", "unsubscribed",
                                                     "bounced"]))
    text, name = export_text(fmt, values, deleted, kind)

    def says_subscribed(number: int) -> bool:
        value = values[number].strip().lower()
        if fmt == "mailchimp":
            return MAILCHIMP_KINDS[kind][2]
        if fmt == "ghost" and deleted[number]:
            return False
        if not value and fmt != "runletter":  # no status of its own: the coach's --status
            return status == "active"
        return value in SUBSCRIBED[fmt]

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(text, encoding="utf-8", newline="")
        with open_store(Path(folder) / "runletter.db") as opened:
            for number, old in enumerate(before):
                if old is not None:
                    opened.add(f"r{number}@example.com", status=old)
            try:
                report = import_file(opened, path, GOALS, ArrivalOptions(status=status),
                                     display=name)
                skipped = {f.line - 2 for f in report.errors}  # row n is on line n + 2
            except RunletterError:
                skipped = set(range(count))  # a refused file lands nothing
            after = {s.email: s.status for s in opened.list()}
    for number in range(count):
        landed = after.get(f"r{number}@example.com")
        if number in skipped:  # a row that did not land may only take a reader off the list
            assert landed == before[number] or (landed in LEFT and before[number] in (
                "active", "pending"))
        elif before[number] in LEFT:
            assert landed in LEFT
        elif landed == "active":
            assert says_subscribed(number) and status in (None, "active")
