"""What readers and providers change through `runletter serve`, as Store methods: one
transaction each, every status change audited, the pause model kept in the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime

from publisher import clock
from publisher.store import Store, now
from tests.samples import GATED


def add_row(store: Store, post: str, subscriber_id: int, state: str) -> None:
    reader = store.by_id(subscriber_id)
    with store.transaction() as conn:
        conn.execute("INSERT INTO deliveries(post, subscriber_id, email, goal, state, attempts, "
                     "updated_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
                     (post, subscriber_id, reader.email, reader.goal, state, now()))


def reasons(store: Store, email: str) -> list[tuple[str | None, str, str]]:
    return [(h.old_status, h.new_status, h.reason) for h in store.history(email)]


def test_by_id_finds_a_reader_and_none_for_an_unknown_id(store):
    reader = store.add("a@example.com", goal="5k")
    assert store.by_id(reader.id) == reader
    assert store.by_id(reader.id + 1) is None


def test_last_change_is_the_most_recent_audit_row(store):
    reader = store.add("a@example.com")
    store.set_status(reader.id, "unsubscribed", "because")
    assert (store.last_change(reader.id).new_status, store.last_change(reader.id).reason) == (
        "unsubscribed", "because")
    assert store.last_change(reader.id + 1) is None


def test_pause_unsubscribes_with_a_paused_reason_and_resume_brings_the_reader_back(store):
    reader = store.add("a@example.com")
    assert store.pause(reader.id, "preferences page") is True
    assert store.is_paused(store.by_id(reader.id))
    assert store.resume(reader.id, "preferences page") is True
    assert store.by_id(reader.id).status == "active"
    assert reasons(store, reader.email)[1:] == [
        ("active", "unsubscribed", "paused (preferences page)"),
        ("unsubscribed", "active", "resumed (preferences page)")]


def test_pause_of_a_reader_who_left_changes_nothing(store):
    reader = store.add("a@example.com", status="bounced")
    assert store.pause(reader.id, "preferences page") is False
    assert store.by_id(reader.id).status == "bounced"
    assert len(store.history(reader.email)) == 1


def test_resume_of_an_unsubscribed_reader_who_did_not_pause_changes_nothing(store):
    reader = store.add("a@example.com", status="unsubscribed")
    assert store.resume(reader.id, "preferences page") is False
    assert store.by_id(reader.id).status == "unsubscribed"


def test_unsubscribe_changes_an_active_reader_once(store):
    reader = store.add("a@example.com")
    assert store.unsubscribe(reader.id, "unsubscribe link") is True
    assert store.unsubscribe(reader.id, "unsubscribe link") is False
    assert reasons(store, reader.email)[1:] == [("active", "unsubscribed", "unsubscribe link")]


def test_unsubscribe_leaves_a_pause_resumable_unless_asked_to_end_it(store):
    reader = store.add("a@example.com")
    store.pause(reader.id, "preferences page")
    assert store.unsubscribe(reader.id, "one-click") is False
    assert store.is_paused(store.by_id(reader.id))
    assert store.unsubscribe(reader.id, "unsubscribed (preferences page)", end_pause=True)
    assert not store.is_paused(store.by_id(reader.id))
    assert store.resume(reader.id, "preferences page") is False
    assert reasons(store, reader.email)[-1] == ("unsubscribed", "unsubscribed",
                                                "unsubscribed (preferences page)")


def test_confirm_activates_a_pending_reader_and_records_consent(store):
    reader = store.add("a@example.com", status="pending", consent_source="form, unconfirmed")
    assert store.confirm(reader.id, issued=0.0, source="signup form", ip="192.0.2.7") == (
        "confirmed")
    after = store.by_id(reader.id)
    assert (after.status, after.consent_source, after.consent_ip) == (
        "active", "signup form", "192.0.2.7")
    assert reasons(store, reader.email)[-1] == ("pending", "active",
                                                "confirmed signup (double opt-in)")
    assert store.confirm(reader.id, issued=0.0, source="signup form", ip="x") == "already"
    assert store.by_id(reader.id).consent_ip == "192.0.2.7"


def test_a_confirmation_issued_before_the_reader_left_is_stale(store):
    reader = store.add("a@example.com", status="pending")
    issued = datetime.fromisoformat(now()).timestamp() - 60
    store.set_status(reader.id, "unsubscribed", "unsubscribe link")
    assert store.left_since(store.by_id(reader.id), issued)
    assert store.confirm(reader.id, issued, "signup form", None) == "stale"
    assert store.by_id(reader.id).status == "unsubscribed"


def test_a_confirmation_issued_after_the_reader_left_brings_them_back(store):
    reader = store.add("a@example.com", status="unsubscribed")
    issued = datetime.fromisoformat(now()).timestamp() + 1
    assert not store.left_since(store.by_id(reader.id), issued)
    assert store.confirm(reader.id, issued, "signup form", None) == "confirmed"
    assert reasons(store, reader.email)[-1][2] == (
        "re-subscribed: confirmed by email link after unsubscribed")


def test_record_consent_sets_source_time_and_ip(store):
    reader = store.add("a@example.com")
    store.record_consent(reader.id, "signup form", "2001:db8::1")
    after = store.by_id(reader.id)
    assert (after.consent_source, after.consent_ip) == ("signup form", "2001:db8::1")
    assert after.consent_at is not None


def test_change_goal_drops_only_the_rows_not_yet_sent(store):
    reader = store.add("a@example.com", goal="5k", first_name="Ann")
    for post, state in (("p1", "planned"), ("p2", "failed"), ("p3", "sent"),
                        ("p4", "in-flight")):
        add_row(store, post, reader.id, state)
    changed = store.change_goal(reader.id, "marathon", "Anna")
    assert (changed.goal, changed.first_name) == ("marathon", "Anna")
    rows = store.conn.execute("SELECT post FROM deliveries ORDER BY post").fetchall()
    assert [r[0] for r in rows] == ["p3", "p4"]


def test_change_goal_with_the_same_goal_keeps_the_ledger(store):
    reader = store.add("a@example.com", goal="5k")
    add_row(store, "p1", reader.id, "planned")
    store.change_goal(reader.id, "5k", "Renamed")
    assert store.conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 1
    assert store.by_id(reader.id).first_name == "Renamed"


def test_apply_event_only_moves_a_status_towards_the_stronger_one(store):
    reader = store.add("a@example.com")
    assert store.apply_event("A@example.com", "complained", "spam")[1] is True
    found, changed = store.apply_event("a@example.com", "bounced", "later bounce")
    assert (found.id, changed) == (reader.id, False)
    assert store.by_id(reader.id).status == "complained"
    assert reasons(store, reader.email)[-1] == ("active", "complained", "spam")


def test_apply_event_for_an_address_not_on_the_list_changes_nothing(store):
    assert store.apply_event("nobody@example.com", "bounced", "x") == (None, False)
    assert store.conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 0


def test_take_signup_slot_counts_per_client_within_the_window(store):
    assert [store.take_signup_slot("192.0.2.1", 2, 3600, at) for at in (0, 10, 20)] == [
        True, True, False]
    assert store.take_signup_slot("192.0.2.2", 2, 3600, 20) is True  # another client
    assert store.take_signup_slot("192.0.2.1", 2, 3600, 3605) is True  # the first slot aged


def test_a_bucket_with_a_longer_window_outlives_another_buckets_shorter_one(store):
    day = 24 * 3600
    assert store.take_signup_slot("to:reader", 1, 2 * day, 0, keep=3600) is True
    assert store.take_signup_slot("192.0.2.1", 10, 3600, day, keep=2 * day) is True
    assert store.take_signup_slot("to:reader", 1, 2 * day, day + 1, keep=3600) is False
    assert store.take_signup_slot("192.0.2.1", 1, 3600, day + 1, keep=2 * day) is False


def test_giving_back_a_buckets_slots_lets_the_next_one_through(store):
    assert store.take_signup_slot("to:reader", 1, 3600, 0) is True
    store.give_back_signup_slots("to:reader")
    assert store.take_signup_slot("to:reader", 1, 3600, 1) is True


def test_mark_webhook_seen_refuses_a_token_twice_until_it_is_forgotten(store):
    assert store.mark_webhook_seen("hooks", "t1", keep=100, at=0) is True
    assert store.mark_webhook_seen("hooks", "t1", keep=100, at=50) is False
    assert store.mark_webhook_seen("other", "t1", keep=100, at=50) is True
    assert store.mark_webhook_seen("hooks", "t1", keep=100, at=101) is True


# -- ready at a gated step ------------------------------------------------------------------

def enrol(store: Store, sequence: str, subscriber_id: int, next_at: float) -> None:
    with store.transaction() as conn:
        conn.execute("INSERT INTO enrolments(sequence, subscriber_id, basis, next_at, waiting) "
                     "VALUES (?, ?, 'race', ?, ?)", (sequence, subscriber_id, next_at, GATED))


def next_at(store: Store, sequence: str, subscriber_id: int) -> float:
    return store.conn.execute("SELECT next_at FROM enrolments WHERE sequence = ? AND "
                              "subscriber_id = ?", (sequence, subscriber_id)).fetchone()[0]


def test_mark_ready_records_the_step_at_the_time_of_the_runs_clock(store):
    reader = store.add("a@example.com")
    with clock.pinned(datetime(2027, 1, 10, 5, 30, tzinfo=UTC)):
        assert store.mark_ready(reader.id, GATED) is True
    assert store.ready_at(reader.id, GATED) == "2027-01-10T05:30:00+00:00"


def test_ready_at_is_none_for_a_step_the_reader_has_not_marked(store):
    reader = store.add("a@example.com")
    store.mark_ready(reader.id, GATED)
    assert store.ready_at(reader.id, "marathon-build/07-taper") is None
    assert store.ready_at(reader.id + 1, GATED) is None


def test_mark_ready_a_second_time_records_and_audits_nothing_new(store):
    reader = store.add("a@example.com")
    with clock.pinned(datetime(2027, 1, 10, 5, 30, tzinfo=UTC)):
        store.mark_ready(reader.id, GATED)
    assert store.mark_ready(reader.id, GATED) is False
    assert store.ready_at(reader.id, GATED) == "2027-01-10T05:30:00+00:00"
    assert reasons(store, reader.email) == [(None, "active", "added (cli)"),
                                            ("active", "active", f"ready after {GATED}")]


def test_mark_ready_makes_only_that_readers_enrolment_in_that_sequence_due(store):
    reader, other = store.add("a@example.com"), store.add("b@example.com")
    for sequence, subscriber_id in (("marathon-build", reader.id), ("comeback", reader.id),
                                    ("marathon-build", other.id)):
        enrol(store, sequence, subscriber_id, 1e12)
    store.mark_ready(reader.id, GATED)
    assert [next_at(store, "marathon-build", reader.id), next_at(store, "comeback", reader.id),
            next_at(store, "marathon-build", other.id)] == [0, 1e12, 1e12]


def test_mark_ready_of_a_paused_reader_records_nothing_and_keeps_the_pause_resumable(store):
    reader = store.add("a@example.com")
    store.pause(reader.id, "preferences page")
    assert store.mark_ready(reader.id, GATED) is False
    assert store.ready_at(reader.id, GATED) is None
    assert store.is_paused(store.by_id(reader.id))
