"""A real publish against the contract servers while readers leave mid-send and the
provider asks to wait: nobody who left is sent to, a Retry-After holds back every request,
and a failed call comes back whole.

Time is the publish's own fake clock (tests.support.Clock), lent to the contract
server so each request is stamped with it: a 45 s Retry-After takes no real time. The CLI
tests run on real time and bound the recorded request times from one side only.
"""

from __future__ import annotations

import re
import time
from collections import Counter

from publisher.delivery.providers.mailgun import MailgunProvider
from publisher.delivery.providers.sendgrid import SendgridProvider
from publisher.store.ledger import Ledger
from tests.contract import running
from tests.helpers.provider_scenarios import (
    assert_each_reader_got_their_own_copy,
    ledger_states,
    provider_env,
    publish,
    register,
    send_with_ledger,
)
from tests.helpers.support import Clock, import_sample, project_store
from tests.samples import AUDIENCE, ON_BOTH_BACKENDS

pytestmark = ON_BOTH_BACKENDS  # SQLite and PostgreSQL, as the backend fixture sets

GOALS = 6  # one call per goal for Mailgun and SendGrid, which send one edition per call


class LeavingLedger(Ledger):
    """The real ledger; just before the second call's rows are claimed (read, not yet
    marked, while the first call is out), their readers unsubscribe through their own
    connection to the store, as `serve` would."""

    root = None
    claims = 0
    left: list[str] = []

    def mark_in_flight(self, post, rows):
        rows = list(rows)
        self.leave(rows)
        return super().mark_in_flight(post, rows)

    def record(self, post, receipts, attempts, base, cap, at, then_mark=(), call=None):
        self.leave(list(then_mark))
        return super().record(post, receipts, attempts, base, cap, at, then_mark=then_mark,
                              call=call)

    def leave(self, rows):
        if not rows:
            return
        type(self).claims += 1
        if self.claims == 2:
            with project_store(self.root) as store:
                for row in rows:
                    store.set_status(row.subscriber_id, "unsubscribed", "one-click")
                    self.left.append(row.email)


def test_readers_who_leave_after_their_call_is_read_are_not_sent_to(sample_root, monkeypatch):
    import_sample(sample_root)
    monkeypatch.setattr(LeavingLedger, "claims", 0)
    monkeypatch.setattr(LeavingLedger, "left", [])
    monkeypatch.setattr(LeavingLedger, "root", sample_root)
    with running("sendgrid") as server:
        send_with_ledger(sample_root, SendgridProvider, provider_env("sendgrid", server),
                         ledger_class=LeavingLedger)
        left = frozenset(LeavingLedger.left)
        assert left and not left & set(server.counts())
        assert_each_reader_got_their_own_copy(server, sample_root, without=left)
    assert ledger_states(sample_root) == Counter({"sent": AUDIENCE - len(left),
                                                 "rejected": len(left)})


def test_after_a_retry_after_no_call_of_any_goal_goes_out_until_it_has_passed(sample_root):
    import_sample(sample_root)
    clock = Clock()
    with running("mailgun") as server:
        server.clock = clock
        server.fail_next(429, headers={"Retry-After": "30"})
        outcome = send_with_ledger(sample_root, MailgunProvider,
                                   provider_env("mailgun", server), clock)
        refused, *later = server.requests
        assert refused.status == 429 and len(later) == GOALS
        assert all(r.at >= refused.at + 30 for r in later)
        assert sum(outcome.sent.values()) == AUDIENCE


def test_a_retry_after_longer_than_backoff_max_is_honoured_not_cut(sample_root):
    import_sample(sample_root)
    clock = Clock()
    with running("mailgun") as server:
        server.clock = clock
        server.fail_next(429, headers={"Retry-After": "45"})
        send_with_ledger(sample_root, MailgunProvider, provider_env("mailgun", server), clock,
                         backoff_base=1, backoff_max=10)
        refused, following = server.requests[:2]
        assert following.at - refused.at >= 45


def test_send_says_how_long_the_provider_asked_to_wait(sample_root):
    import_sample(sample_root)
    clock = Clock()
    said: list[str] = []
    with running("mailgun") as server:
        server.fail_next(429, headers={"Retry-After": "45"})
        send_with_ledger(sample_root, MailgunProvider, provider_env("mailgun", server), clock,
                         backoff_max=10, notice=said.append)
    assert "Mailgun asked to wait 45 s" in said


def test_the_progress_line_says_the_provider_asked_to_wait(sample_root, monkeypatch):
    register(monkeypatch)
    import_sample(sample_root)
    toml = sample_root / "runletter.toml"
    toml.write_text(toml.read_text().replace("backoff_max = 60.0", "backoff_max = 0.5"))
    with running("mailgun") as server:
        server.fail_next(429, headers={"Retry-After": "2"})
        result = publish("mailgun", provider_env("mailgun", server))
        assert result.exit_code == 0, result.output
        assert "Mailgun asked to wait 2 s" in result.output
        refused, following = server.requests[:2]
        assert following.at - refused.at >= 2  # real time: a lower bound only


def test_a_retry_after_past_the_ceiling_stops_the_run_and_says_when_to_rerun(sample_root,
                                                                            monkeypatch):
    register(monkeypatch)
    import_sample(sample_root)
    with running("mailgun") as server:
        server.fail_next(429, headers={"Retry-After": "7200"})
        before = time.time()
        result = publish("mailgun", provider_env("mailgun", server), catch=True)
        after = time.time()
        assert result.exit_code == 1
        assert [r.status for r in server.requests] == [429]
    *_, last, summary = result.output.strip().splitlines()
    assert summary == "1 error"
    assert "Mailgun asked to wait 7200 s" in last and "Traceback" not in result.output
    when = re.search(r"run publish again after (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", last)
    assert when, last
    rerun = time.mktime(time.strptime(when.group(1), "%Y-%m-%d %H:%M:%S"))
    assert before + 7200 - 1 <= rerun <= after + 7200 + 1
    states = ledger_states(sample_root)
    assert states["in-flight"] == 0 and states["sent"] == 0
    assert states["failed"] == 10 and states["planned"] == AUDIENCE - 10


def test_a_failed_call_is_retried_as_one_call_with_all_its_readers(sample_root):
    import_sample(sample_root)
    clock = Clock()
    with running("mailgun") as server:
        server.fail_next(503)
        outcome = send_with_ledger(sample_root, MailgunProvider,
                                   provider_env("mailgun", server), clock)
        assert [r.status for r in server.requests].count(503) == 1
        assert len(server.requests) == GOALS + 1
        assert server.requests[-1].recipients == server.requests[0].recipients == 10
        assert sum(outcome.sent.values()) == AUDIENCE
