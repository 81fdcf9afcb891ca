"""The ledger and publish: every reader once, their goal's edition, safe to re-run."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.delivery.providers import REGISTRY
from publisher.delivery.providers.base import (
    ACCEPTED,
    FAILED,
    REJECTED,
    ProviderConfigError,
    Receipt,
)
from publisher.delivery.providers.outbox import OutboxProvider
from publisher.delivery.retry import backoff
from publisher.delivery.send import send_post
from publisher.project import open_project
from publisher.render.email import EmailRenderer
from publisher.store.ledger import Ledger
from tests.helpers.support import Crash, import_sample, outbox_messages, project_store
from tests.helpers.support import run_raising as run
from tests.samples import HIP_DRIVE as POST
from tests.samples import ON_BOTH_BACKENDS

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets


class CrashAfterFirstBatch(OutboxProvider):
    """Writes every batch it is given, but the process 'dies' right after the second."""

    name = "crashy"
    max_batch = 4
    batches = 0

    def send(self, batch):
        receipts = super().send(batch)
        type(self).batches += 1
        if type(self).batches == 2:
            raise Crash()
        return receipts


class Flaky(OutboxProvider):
    """Fails chosen readers transiently (with Retry-After) on their first try."""

    name = "flaky"
    max_batch = 5
    tried: Counter = Counter()
    fail_first: set[str] = set()
    reject: set[str] = set()

    def send(self, batch):
        good = tuple(r for r in batch.recipients if self.tried[r.email] > 0
                     or r.email not in self.fail_first | self.reject)
        receipts = []
        for r in batch.recipients:
            self.tried[r.email] += 1
            if r.email in self.reject:
                receipts.append(Receipt(r.subscriber_id, REJECTED, reason="550 no such user"))
            elif r not in good:
                receipts.append(Receipt(r.subscriber_id, FAILED, reason="429", retry_after=7))
        return receipts + super().send(type(batch)(batch.edition, batch.compiled, good))


def test_publish_sends_each_reader_exactly_one_message_for_their_goal(sample_root):
    import_sample(sample_root)
    result = run("publish", POST, "--yes")
    assert result.exit_code == 0, result.output
    messages = outbox_messages(sample_root)
    with project_store(sample_root) as store:
        expected = {s.email: s.goal for s in store.list(status="active")
                    if s.goal in ("5k", "10k", "half", "marathon", "ultra", "comeback")}
    got = Counter(m["To"].addresses[0].addr_spec for m in messages)
    assert set(got) == set(expected) and set(got.values()) == {1}
    for message in messages:
        goal = message["X-Runletter-Edition"].rsplit("/", 1)[1]
        assert goal == expected[message["To"].addresses[0].addr_spec]


def test_the_outbox_dates_every_message_in_utc_as_plus_0000(sample_root):
    import_sample(sample_root)
    assert run("publish", POST, "--yes").exit_code == 0
    dates = {str(m["Date"])[-5:] for m in outbox_messages(sample_root)}
    assert dates == {"+0000"}


def test_a_second_publish_sends_nothing(sample_root):
    import_sample(sample_root)
    run("publish", POST, "--yes")
    first = len(outbox_messages(sample_root))
    result = run("publish", POST, "--yes")
    assert "nothing to send" in result.output
    assert len(outbox_messages(sample_root)) == first


def test_dry_run_sends_nothing_and_writes_no_ledger_rows(sample_root):
    import_sample(sample_root)
    result = run("publish", POST, "--dry-run")
    assert result.exit_code == 0 and "would send 59 messages" in result.output
    assert not (sample_root / "outbox").exists()
    with project_store(sample_root) as store:
        assert store.conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 0


def test_publish_asks_for_confirmation_and_sends_nothing_when_refused(sample_root):
    import_sample(sample_root)
    result = CliRunner().invoke(main, ["publish", POST], input="n\n")
    assert result.exit_code == 1 and "Send 'Hip Drive" in result.output
    assert not (sample_root / "outbox").exists()


def test_a_draft_never_sends(sample_root):
    import_sample(sample_root)
    path = sample_root / "content/posts" / f"{POST}.md"
    path.write_text(path.read_text().replace("status: ready", "status: draft"))
    result = run("publish", POST, "--yes")
    assert result.exit_code == 1 and "is a draft" in result.output
    assert not (sample_root / "outbox").exists()


def test_a_test_copy_goes_to_one_address_outside_the_ledger(sample_root):
    import_sample(sample_root)
    result = run("publish", POST, "--to", "me@example.org", "--goal", "comeback")
    assert result.exit_code == 0, result.output
    [message] = outbox_messages(sample_root)
    assert message["To"].addresses[0].addr_spec == "me@example.org"
    assert message["X-Runletter-Edition"].endswith("/comeback")
    with project_store(sample_root) as store:
        assert store.conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 0


def test_a_real_provider_refuses_to_publish_without_the_secret(sample_root, monkeypatch):
    import_sample(sample_root)
    monkeypatch.delenv("RUNLETTER_SECRET")
    result = run("publish", POST, "--yes", "--provider", "smtp")
    assert result.exit_code == 1 and "RUNLETTER_SECRET is not set" in result.output


def publish_and_crash_after_the_second_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `runletter publish` until the process 'dies' right after its second batch."""
    monkeypatch.setitem(REGISTRY, "crashy", f"{__name__}:CrashAfterFirstBatch")
    CrashAfterFirstBatch.batches = 0
    with pytest.raises(Crash):
        CliRunner().invoke(main, ["publish", POST, "--yes", "--provider", "crashy"],
                           catch_exceptions=False)


def test_a_crash_between_batches_leaves_in_flight_rows_that_are_not_resent(sample_root,
                                                                           monkeypatch):
    import_sample(sample_root)
    publish_and_crash_after_the_second_batch(monkeypatch)
    with project_store(sample_root) as store:
        assert Ledger(store).count(POST, "in-flight") == 4
        assert Ledger(store).count(POST, "sent") == 4
    result = run("publish", POST, "--yes")
    assert "4 deliveries were in flight" in result.output
    counts = Counter(m["To"].addresses[0].addr_spec for m in outbox_messages(sample_root))
    assert max(counts.values()) == 1 and len(counts) == 59
    with project_store(sample_root) as store:
        assert Ledger(store).count(POST, "in-flight") == 4


def test_resend_in_flight_sends_the_unsure_batch_again_when_asked(sample_root, monkeypatch):
    import_sample(sample_root)
    publish_and_crash_after_the_second_batch(monkeypatch)
    result = run("publish", POST, "--yes", "--resend-in-flight")
    assert result.exit_code == 0, result.output
    with project_store(sample_root) as store:
        assert Ledger(store).count(POST, "sent") == 59
        assert Ledger(store).count(POST, "in-flight") == 0


def test_transient_failures_back_off_honour_retry_after_and_end_delivered_once(pipeline):
    project, resolved, addresser, ledger, store = pipeline
    Flaky.tried = Counter()
    Flaky.fail_first = {s.email for s in store.list(status="active", goal="marathon")}
    Flaky.reject = set()
    waits: list[float] = []
    clock = [1000.0]

    def sleep(seconds):
        waits.append(seconds)
        clock[0] += seconds

    with Flaky(project.config, addresser, {"path": ""}) as provider:
        outcome = send_post(resolved, ledger, provider, EmailRenderer(project.config),
                            addresser, backoff_base=1, backoff_max=60, sleep=sleep,
                            clock=lambda: clock[0])
    assert waits and all(w >= 7 for w in waits)
    assert sum(outcome.sent.values()) == 59
    counts = Counter(m["To"].addresses[0].addr_spec for m in outbox_messages(project.root))
    assert set(counts.values()) == {1} and len(counts) == 59


def test_a_permanent_rejection_marks_the_reader_bounced_and_the_rest_go_on(pipeline):
    project, resolved, addresser, ledger, store = pipeline
    victim = next(s for s in store.list(status="active", goal="marathon"))
    Flaky.tried, Flaky.fail_first, Flaky.reject = Counter(), set(), {victim.email}
    with Flaky(project.config, addresser, {"path": ""}) as provider:
        outcome = send_post(resolved, ledger, provider, EmailRenderer(project.config),
                            addresser, sleep=lambda s: None)
    assert outcome.rejected["marathon"] == 1 and sum(outcome.sent.values()) == 58
    assert store.get(victim.email).status == "bounced"
    assert [h.new_status for h in store.history(victim.email)][-1] == "bounced"


def test_a_reader_who_fails_every_try_ends_failed_after_the_limit(pipeline):
    project, resolved, addresser, ledger, store = pipeline
    victim = next(s for s in store.list(status="active", goal="ultra"))

    class AlwaysDown(Flaky):
        def send(self, batch):
            self.fail_first = {victim.email}
            self.tried[victim.email] = 0
            return super().send(batch)

    Flaky.tried, Flaky.reject = Counter(), set()
    clock = [1000.0]  # its Retry-After holds every call back 7 s: sit them out on a fake clock

    def sleep(seconds):
        clock[0] += seconds

    with AlwaysDown(project.config, addresser, {"path": ""}) as provider:
        outcome = send_post(resolved, ledger, provider, EmailRenderer(project.config),
                            addresser, max_attempts=3, sleep=sleep, clock=lambda: clock[0])
    assert outcome.failed == Counter({"ultra": 1})
    row = store.conn.execute("SELECT state, attempts FROM deliveries WHERE email = :email",
                             {"email": victim.email}).fetchone()
    assert row == ("failed", 3)


def test_readers_the_provider_made_no_call_for_keep_their_try(pipeline):
    project, resolved, addresser, ledger, store = pipeline
    clock = [1000.0]

    def sleep(seconds):
        clock[0] += seconds

    class AsksToWaitOnce(OutboxProvider):
        """The first call: its first reader refused with Retry-After, the rest never sent."""

        max_batch = 5
        calls = 0

        def send(self, batch):
            type(self).calls += 1
            if self.calls > 1:
                return super().send(batch)
            first, *rest = batch.recipients
            return [Receipt(first.subscriber_id, FAILED, reason="429", retry_after=5),
                    *(Receipt(r.subscriber_id, FAILED, reason="not sent", retry_after=5,
                              tried=False) for r in rest)]

    with AsksToWaitOnce(project.config, addresser, {"path": ""}) as provider:
        send_post(resolved, ledger, provider, EmailRenderer(project.config), addresser,
                  sleep=sleep, clock=lambda: clock[0])
    attempts = Counter(row[0] for row in store.conn.execute(
        "SELECT attempts FROM deliveries WHERE state = 'sent'"))
    assert attempts == Counter({1: 58, 2: 1})


def test_a_reader_who_leaves_after_planning_is_not_sent(pipeline):
    project, resolved, addresser, ledger, store = pipeline
    leaver = next(s for s in store.list(status="active", goal="half"))
    store.set_status(leaver.email, "unsubscribed", "test")
    with OutboxProvider(project.config, addresser, {"path": ""}) as provider:
        send_post(resolved, ledger, provider, EmailRenderer(project.config), addresser)
    sent_to = {m["To"].addresses[0].addr_spec for m in outbox_messages(project.root)}
    assert leaver.email not in sent_to and len(sent_to) == 58


def test_a_provider_config_error_stops_the_publish_and_marks_nothing(pipeline):
    project, resolved, addresser, ledger, store = pipeline

    class BadKey(OutboxProvider):
        def send(self, batch):
            raise ProviderConfigError("401: bad server token")

    with BadKey(project.config, addresser, {"path": ""}) as provider, pytest.raises(
            ProviderConfigError):
        send_post(resolved, ledger, provider, EmailRenderer(project.config), addresser)
    assert ledger.count(POST, "planned") == 59
    assert store.conn.execute("SELECT MAX(attempts) FROM deliveries").fetchone()[0] == 0


def in_flight_and_calls(store) -> tuple[int, list[str]]:
    """(rows in flight, the states of the calls that hold them)."""
    calls = sorted(state for (state,) in store.conn.execute("SELECT state FROM calls"))
    return Ledger(store).count(POST, "in-flight"), calls


def test_the_next_call_is_claimed_while_the_one_before_is_on_the_wire(pipeline):
    project, resolved, addresser, ledger, store = pipeline

    class WatchesTheLedger(OutboxProvider):
        """Holds its first call until the next call's rows are in flight (10 s at most)."""

        max_batch = 4
        in_flight_seen: list[int] = []

        def send(self, batch):
            if not self.in_flight_seen:
                with project_store(project.root) as own:  # the worker's own connection
                    deadline = time.monotonic() + 10
                    while in_flight_and_calls(own)[0] < 8 and (
                            time.monotonic() < deadline):
                        time.sleep(0.01)
                    self.in_flight_seen.append(in_flight_and_calls(own))
            return super().send(batch)

    with WatchesTheLedger(project.config, addresser, {"path": ""}) as provider:
        outcome = send_post(resolved, ledger, provider, EmailRenderer(project.config),
                            addresser)
    # Its own 4 and the next call's 4; its call out, the next only claimed.
    assert WatchesTheLedger.in_flight_seen == [(8, ["claimed", "out"])]
    assert sum(outcome.sent.values()) == 59 and ledger.count(POST, "in-flight") == 0


def test_the_next_call_is_made_ready_by_the_provider_while_the_one_before_is_on_the_wire(
        pipeline):
    project, resolved, addresser, ledger, store = pipeline

    class WatchesItsPreparing(OutboxProvider):
        """Holds its first call until the next one is prepared (10 s at most)."""

        max_batch = 4
        prepared: list[str] = []  # the thread each call was prepared on
        seen_on_the_wire: list[int] = []  # calls prepared while the first was out

        def prepare(self, batches):
            self.prepared.append(threading.current_thread().name)
            return super().prepare(batches)

        def send_prepared(self, prepared):
            if not self.seen_on_the_wire:
                deadline = time.monotonic() + 10
                while len(self.prepared) < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                self.seen_on_the_wire.append(len(self.prepared))
            return super().send_prepared(prepared)

    with WatchesItsPreparing(project.config, addresser, {"path": ""}) as provider:
        outcome = send_post(resolved, ledger, provider, EmailRenderer(project.config),
                            addresser)
    assert WatchesItsPreparing.seen_on_the_wire == [2]
    assert set(WatchesItsPreparing.prepared) == {threading.main_thread().name}
    assert len(WatchesItsPreparing.prepared) == outcome.batches  # each call once
    assert sum(outcome.sent.values()) == 59

def test_a_call_that_cannot_be_prepared_goes_back_at_once(pipeline):
    project, resolved, addresser, ledger, store = pipeline

    class FailsToPrepareTheSecondCall(OutboxProvider):
        max_batch = 4
        prepared = 0

        def prepare(self, batches):
            type(self).prepared += 1
            if self.prepared == 2:
                raise RuntimeError("cannot build")
            return super().prepare(batches)

    with FailsToPrepareTheSecondCall(project.config, addresser, {"path": ""}) as provider, \
            pytest.raises(RuntimeError):
        send_post(resolved, ledger, provider, EmailRenderer(project.config), addresser)
    # The first call was out (in flight); the second was claimed, never built, put back.
    assert in_flight_and_calls(store) == (4, ["out"])
    assert ledger.count(POST, "planned") == 55

def test_an_interrupted_publish_puts_the_call_claimed_to_go_next_back(pipeline):
    project, resolved, addresser, ledger, store = pipeline

    class InterruptedOnTheSecondCall(OutboxProvider):
        max_batch = 4
        calls = 0

        def send(self, batch):
            type(self).calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt  # Ctrl-C while the call is out
            return super().send(batch)

    with InterruptedOnTheSecondCall(project.config, addresser, {"path": ""}) as provider, \
            pytest.raises(KeyboardInterrupt):
        send_post(resolved, ledger, provider, EmailRenderer(project.config), addresser)
    # The call that was out may have gone: in flight. The one claimed behind it never did.
    assert ledger.report(POST) and (ledger.count(POST, "sent"), ledger.count(
        POST, "in-flight"), ledger.count(POST, "planned")) == (4, 4, 51)
    assert store.conn.execute("SELECT MAX(attempts) FROM deliveries WHERE state = 'planned'"
                              ).fetchone()[0] == 0


def test_backoff_grows_exponentially_with_jitter_and_honours_retry_after():
    assert backoff(1, 1, 60, None, rng=lambda: 1.0) == 1
    assert backoff(4, 1, 60, None, rng=lambda: 1.0) == 8
    assert backoff(4, 1, 60, None, rng=lambda: 0.0) == 4
    assert backoff(10, 1, 60, None, rng=lambda: 1.0) == 60
    assert backoff(1, 1, 60, 30, rng=lambda: 0.0) == 30
    assert backoff(1, 1, 60, 3600, rng=lambda: 0.0) == 3600  # the provider's word, uncut


def test_the_report_shows_the_ledger_per_segment(sample_root):
    import_sample(sample_root)
    run("publish", POST, "--yes")
    result = run("report", POST)
    lines = {line.split()[0]: line.split() for line in result.output.splitlines()}
    assert lines["marathon"][3] == "12" and lines["total"][3] == "59"


def test_accepted_receipt_constant_is_the_ledger_word():
    assert ACCEPTED == "accepted"


def test_another_posts_mistake_does_not_fail_a_finished_publish(sample_root):
    import_sample(sample_root)
    other = sample_root / "content/posts/2026-10-27-synchronicity.md"
    other.write_text(other.read_text().replace("topic: coordination", "topic: coordinaton"))
    result = run("publish", POST, "--yes")
    assert result.exit_code == 0, result.output
    assert "the archive was not rebuilt" in result.output
    assert len(outbox_messages(sample_root)) == 59


def test_each_test_copy_has_its_own_message_id(sample_root):
    import_sample(sample_root)
    run("publish", POST, "--to", "me@example.org")
    run("publish", POST, "--to", "me@example.org")
    ids = {m["Message-ID"] for m in outbox_messages(sample_root)}
    assert len(ids) == 2


EVERY_GOAL = "2026-11-10-what-physical-therapy-offers-runners"  # no audience: every goal
GOALS_ORDER = ["5k", "10k", "half", "marathon", "ultra", "comeback", "general"]


def first_words(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def test_publish_lists_segments_in_goals_order_under_a_header(sample_root):
    import_sample(sample_root)
    result = run("publish", EVERY_GOAL, "--yes")
    assert result.exit_code == 0, result.output
    words = first_words(result.stdout)
    assert words == ["segment", *GOALS_ORDER, "segment", *GOALS_ORDER, "sent"]


def test_report_lists_segments_in_goals_order_under_a_header(sample_root):
    import_sample(sample_root)
    run("publish", EVERY_GOAL, "--yes")
    words = first_words(run("report", EVERY_GOAL).stdout)
    assert words[0] == "segment" and words[-1] == "total"
    assert "general" in words
    assert words[1:-1] == sorted(words[1:-1], key=GOALS_ORDER.index)


def test_publish_with_no_readers_in_the_audience_says_so(sample_root):
    result = run("publish", POST, "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "nothing to send: no active readers in the post's audience (5k, 10k, half, marathon, "
        "ultra, comeback); 'runletter subscribers import FILE' adds them")


def test_publish_counts_one_message_and_one_batch_in_the_singular(sample_root):
    assert run("subscribers", "add", "ana@example.org", "--goal", "marathon").exit_code == 0
    assert run("publish", POST, "--dry-run").stdout.splitlines()[-1] == (
        "dry run: would send 1 message via outbox; nothing sent")
    asked = CliRunner().invoke(main, ["publish", POST], input="n\n")
    assert "Send 'Hip Drive: six moves for stronger hips' to 1 reader via outbox?" in asked.output
    result = run("publish", POST, "--yes")
    assert result.stdout.splitlines()[-1] == "sent 1 message in 1 batch"


def test_a_publish_renders_each_edition_once(sample_root, monkeypatch):
    import jinja2
    import mjml

    import_sample(sample_root)
    goals = len(open_project(sample_root).resolve(open_project(sample_root).post(POST)).audience)
    calls: Counter = Counter()
    compile_mjml, render_template = mjml.mjml2html, jinja2.Template.render

    def counted_mjml(source, *args, **kwargs):
        calls["mjml"] += 1
        return compile_mjml(source, *args, **kwargs)

    def counted_render(self, *args, **kwargs):
        calls[self.name] += 1
        return render_template(self, *args, **kwargs)

    monkeypatch.setattr(mjml, "mjml2html", counted_mjml)
    monkeypatch.setattr(jinja2.Template, "render", counted_render)
    result = run("publish", POST, "--yes")
    assert result.exit_code == 0, result.output
    assert len(outbox_messages(sample_root)) == 59
    assert (calls["mjml"], calls["base.mjml.j2"], calls["base.txt.j2"]) == (goals, goals, goals)
