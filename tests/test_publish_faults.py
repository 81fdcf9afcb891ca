"""A real publish against the contract servers while readers leave mid-send and the
provider asks to wait: nobody who left is sent to, a Retry-After holds back every request,
and a failed call comes back whole.

Time is the publish's own fake clock (tests.test_postmark.Clock), lent to the contract
server so each request is stamped with it: a 45 s Retry-After takes no real time. The CLI
tests run on real time and bound the recorded request times from one side only.
"""

from __future__ import annotations

import threading
from collections import Counter

from publisher.deliver import Ledger
from publisher.providers.mailgun import MailgunProvider
from publisher.providers.sendgrid import SendgridProvider
from publisher.store import Store

from .contract import running
from .test_deliver import import_sample
from .test_postmark import (
    AUDIENCE,
    Clock,
    assert_each_reader_got_their_own_copy,
    ledger_states,
    provider_env,
    send_with_ledger,
)

GOALS = 6  # one call per goal for Mailgun and SendGrid, which send one edition per call


class WatchedLedger(Ledger):
    """The real ledger; tells when the rows of the second call have been read."""

    peeked: list = []
    second_read = threading.Event()

    def peek(self, *args, **kwargs):
        rows = super().peek(*args, **kwargs)
        if rows:
            type(self).peeked.append(rows)
            if len(self.peeked) == 2:
                self.second_read.set()
        return rows


class LeavingWhileOnTheWire(SendgridProvider):
    """While its first call is out, the readers of the next one (already read, not yet
    marked) unsubscribe through their own connection to the store, as `serve` would."""

    store_path = None
    left: list[str] = []

    def send(self, batch):
        if not self.left:
            assert WatchedLedger.second_read.wait(10), "the next call was never read"
            with Store.open(self.store_path) as store:
                for row in WatchedLedger.peeked[1]:
                    store.set_status(row.subscriber_id, "unsubscribed", "one-click")
                    self.left.append(row.email)
        return super().send(batch)


def test_readers_who_leave_while_the_previous_call_is_out_are_not_sent_to(sample_root,
                                                                          monkeypatch):
    import_sample(sample_root)
    monkeypatch.setattr(WatchedLedger, "peeked", [])
    monkeypatch.setattr(WatchedLedger, "second_read", threading.Event())
    monkeypatch.setattr(LeavingWhileOnTheWire, "left", [])
    monkeypatch.setattr(LeavingWhileOnTheWire, "store_path",
                        sample_root / "subscribers/runletter.db")
    with running("sendgrid") as server:
        send_with_ledger(sample_root, LeavingWhileOnTheWire, provider_env("sendgrid", server),
                         ledger_class=WatchedLedger)
        left = frozenset(LeavingWhileOnTheWire.left)
        assert left and not left & set(server.counts())
        assert_each_reader_got_their_own_copy(server, sample_root, without=left)
    assert ledger_states(sample_root) == Counter({"sent": AUDIENCE - len(left),
                                                 "rejected": len(left)})


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
