"""`runletter subscribers unbounce EMAIL --yes`: an author undoes a bounce recorded by mistake,
audited; never for a reader who unsubscribed or complained (on SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.errors import RunletterError
from tests.helpers.support import assert_user_error, project_store, run
from tests.samples import ON_BOTH_BACKENDS

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets

READER = "ana@example.com"


def reader_with(root, status: str, email: str = READER) -> None:
    """A reader added by the CLI, then given `status` the way a provider's report would."""
    assert run("subscribers", "add", email).exit_code == 0
    if status != "active":
        with project_store(root) as store:
            store.set_status(email, status, "rejected by provider: 554 5.7.1 DMARC")


def status_of(root, email: str = READER) -> str:
    with project_store(root) as store:
        return store.get(email).status


def test_unbounce_with_yes_makes_a_bounced_reader_active(project_dir):
    reader_with(project_dir, "bounced")
    result = run("subscribers", "unbounce", READER, "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{READER} is active again (was bounced)\n"
    assert status_of(project_dir) == "active"


def test_unbounce_is_kept_in_the_audit_trail_as_the_authors_undo(project_dir):
    reader_with(project_dir, "bounced")
    run("subscribers", "unbounce", READER, "--yes")
    with project_store(project_dir) as store:
        last = store.history(READER)[-1]
    assert (last.old_status, last.new_status) == ("bounced", "active")
    assert "unbounced by the author" in last.reason


def test_unbounce_without_yes_shows_the_bounce_and_asks(project_dir):
    reader_with(project_dir, "bounced")
    result = CliRunner().invoke(main, ["subscribers", "unbounce", READER], input="y\n")
    assert result.exit_code == 0, result.output
    assert "bounced (rejected by provider: 554 5.7.1 DMARC)" in result.output
    assert status_of(project_dir) == "active"


def test_unbounce_answered_no_changes_nothing(project_dir):
    reader_with(project_dir, "bounced")
    result = CliRunner().invoke(main, ["subscribers", "unbounce", READER], input="n\n")
    assert result.exit_code == 1
    assert status_of(project_dir) == "bounced"
    with project_store(project_dir) as store:
        assert store.history(READER)[-1].new_status == "bounced"


@pytest.mark.parametrize("status, why", [
    ("unsubscribed", "they chose to leave (only they can come back, by signing up)"),
    ("complained", "they marked a message as spam (never mail them again)"),
])
def test_unbounce_refuses_a_reader_who_left_or_complained_in_one_line(project_dir, status,
                                                                      why):
    reader_with(project_dir, status)
    assert_user_error(run("subscribers", "unbounce", READER, "--yes"),
                      f"runletter: error: {READER} is {status}, not bounced; only a bounce "
                      f"can be undone: {why}\n1 error\n")
    assert status_of(project_dir) == status


def test_unbounce_refuses_an_active_reader_in_one_line(project_dir):
    reader_with(project_dir, "active")
    assert_user_error(run("subscribers", "unbounce", READER, "--yes"),
                      f"runletter: error: {READER} is active, not bounced; only a bounce can "
                      "be undone\n1 error\n")


def test_unbounce_names_an_unknown_address_in_one_line(project_dir):
    assert_user_error(run("subscribers", "unbounce", "nobody@example.org", "--yes"),
                      "runletter: error: no reader nobody@example.org; 'runletter "
                      "subscribers list' shows them\n1 error\n")


def test_the_store_never_unbounces_a_reader_who_is_not_bounced(project_dir):
    reader_with(project_dir, "complained")
    with project_store(project_dir) as store:
        with pytest.raises(RunletterError, match="is complained, not bounced"):
            store.unbounce(READER, "by a test")
        assert store.get(READER).status == "complained"
        assert store.history(READER)[-1].new_status == "complained"
