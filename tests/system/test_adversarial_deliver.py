"""Adversarial properties of a publish: whatever the provider answers, however long it asks
to wait, and whoever leaves while a call is on the wire.

Each example runs the real send_post over a real SQLite ledger (a fresh copy of one small
store) with a scripted provider and the publish's fake clock. The provider answers each
reader accepted, rejected, failed (with or without a Retry-After) or not tried (held back
after a Retry-After); during a call, some readers unsubscribe, bounce or complain through
their own connection to the store, as `runletter serve` would. The properties:

- nobody who left before their row was marked is sent to (the call after the one they left
  during may have been marked before they left: it is claimed while that one is out);
- nobody is sent a second copy once one was accepted;
- no call starts before a Retry-After the provider gave has passed; past the ceiling, the
  run stops and makes no further call;
- nothing is half-written: no row is left in flight, the rows marked sent are exactly the
  accepted readers, and each row's attempts are the calls that really tried its reader.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.delivery.address import Addresser
from publisher.delivery.providers.base import ACCEPTED, FAILED, REJECTED, Provider, Receipt
from publisher.delivery.send import send_post
from publisher.delivery.tokens import Signer
from publisher.project import open_project
from publisher.render.email import EmailRenderer
from publisher.store import Store
from publisher.store.ledger import Ledger
from tests.helpers.support import Clock, copy_sample
from tests.samples import HIP_DRIVE as POST
from tests.samples import SECRET

READERS = 12
GOALS = ("5k", "10k", "half")  # three of the post's six goals; the others have no readers
CEILING = 900.0
MAX_ATTEMPTS = 3
# Exact binary fractions, so the fake clock adds them without rounding.
WAITS = (None, None, 0.5, 2.0, 7.5, 30.0, 5000.0)

answers = st.sampled_from(("accepted", "rejected", "failed", "untried"))
call_scripts = st.fixed_dictionaries({
    "answers": st.lists(answers, min_size=1, max_size=4),
    "retry_after": st.sampled_from(WAITS),
    "leavers": st.lists(st.integers(0, READERS - 1), max_size=3),
    "status": st.sampled_from(("unsubscribed", "bounced", "complained")),
})


@dataclass
class Call:
    """What one provider call was: when it started, whom it carried, what came back."""

    at: float
    ids: list[int]
    receipts: list[Receipt]
    left: set[int] = field(default_factory=set)  # readers who left while it was out


class ScriptedProvider(Provider):
    """Answers each call from a script (then accepts everyone); readers leave mid-call."""

    name = "scripted"
    needs_secret_env = False

    def __init__(self, script: list[dict], store_path: Path, clock: Clock, **kwargs):
        super().__init__(**kwargs)
        self.script, self.store_path, self.clock = list(script), store_path, clock
        self.calls: list[Call] = []

    def send_many(self, batches):
        ids = [r.subscriber_id for b in batches for r in b.recipients]
        step = self.script.pop(0) if self.script else {"answers": ["accepted"],
                                                       "retry_after": None, "leavers": []}
        call = Call(self.clock(), ids, [answer(sid, kind, step["retry_after"]) for sid, kind
                                        in zip(ids, itertools.cycle(step["answers"]))])
        if step["leavers"]:
            with Store.open(self.store_path) as store:  # the worker's own connection
                for index in step["leavers"]:
                    store.set_status(index + 1, step["status"], "adversarial test")
                    call.left.add(index + 1)
        self.calls.append(call)
        return call.receipts


def answer(sid: int, kind: str, retry_after: float | None) -> Receipt:
    """One reader's receipt; 'untried' (held back without a call) only after a Retry-After."""
    if kind == "accepted":
        return Receipt(sid, ACCEPTED, provider_id=f"id-{sid}")
    if kind == "rejected":
        return Receipt(sid, REJECTED, reason="550 no such user")
    return Receipt(sid, FAILED, reason="429", retry_after=retry_after,
                   tried=kind != "untried" or retry_after is None)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The sample newsletter, a closed template store of READERS active readers, and what
    every publish shares."""
    root = copy_sample(tmp_path_factory.mktemp("adversarial") / "news")
    project = open_project(root)
    # Hundreds of publishes commit thousands of times: on tmpfs their fsyncs cost nothing,
    # and the stores are still real SQLite files.
    shm = Path("/dev/shm")
    stores = Path(tempfile.mkdtemp(prefix="runletter-adversarial-", dir=shm if os.access(
        shm, os.W_OK) else root))
    template = stores / "template.db"
    with Store.open(template) as store:
        for n in range(READERS):
            store.add(f"reader{n}@example.org", goal=GOALS[n % len(GOALS)],
                      first_name=f"R{n}")
    yield {"project": project, "template": template, "runs": itertools.count(),
           "resolved": project.resolve(project.post(POST)),
           "addresser": Addresser(project.config, Signer(SECRET)),
           "renderer": EmailRenderer(project.config)}  # its compiled templates are kept
    shutil.rmtree(stores, ignore_errors=True)


def publish(world: dict, script: list[dict], max_batch: int, mixes: bool):
    """One publish over a fresh copy of the template store; (provider, outcome, rows)."""
    path = world["template"].with_name(f"run-{next(world['runs'])}.db")
    shutil.copy(world["template"], path)
    clock = Clock()
    config = world["project"].config
    cls = type("Scripted", (ScriptedProvider,), {"max_batch": max_batch,
                                                 "mixes_editions": mixes})
    with Store.open(path) as store:
        ledger = Ledger(store)
        ledger.plan(POST, [g.slug for g in world["resolved"].audience])
        provider = cls(script, path, clock, config=config, addresser=world["addresser"],
                       settings={})
        outcome = send_post(world["resolved"], ledger, provider, world["renderer"],
                            world["addresser"], max_attempts=MAX_ATTEMPTS, backoff_base=1.0,
                            backoff_max=4.0, sleep=clock.sleep, clock=clock,
                            retry_after_max=CEILING)
        rows = {
            sid: (state, attempts)
            for sid, state, attempts in store.conn.execute(
                "SELECT subscriber_id, state, attempts FROM deliveries WHERE post = :post",
                {"post": POST},
            )
        }
    path.unlink()
    return provider, outcome, rows


runs = dict(script=st.lists(call_scripts, max_size=8), max_batch=st.integers(1, 6),
            mixes=st.booleans())


@settings(max_examples=50, deadline=None)
@given(**runs)
def test_nobody_who_left_while_an_earlier_call_was_out_is_sent_to_after_it(
        world, script, max_batch, mixes):
    # The call after the one they left during may have been claimed before they left (it
    # is claimed while that one is out); every later call is claimed after, so checked.
    provider, _, _ = publish(world, script, max_batch, mixes)
    gone: set[int] = set()
    for before, call in zip([None, *provider.calls], provider.calls, strict=False):
        assert not gone & set(call.ids)
        if before is not None:
            gone |= before.left


@settings(max_examples=50, deadline=None)
@given(**runs)
def test_nobody_gets_two_copies(world, script, max_batch, mixes):
    provider, _, _ = publish(world, script, max_batch, mixes)
    accepted: set[int] = set()
    for call in provider.calls:
        assert not accepted & set(call.ids)
        accepted |= {r.subscriber_id for r in call.receipts if r.status == ACCEPTED}


@settings(max_examples=50, deadline=None)
@given(**runs)
def test_no_call_starts_before_a_retry_after_has_passed(world, script, max_batch, mixes):
    provider, outcome, _ = publish(world, script, max_batch, mixes)
    not_before = 0.0
    for call in provider.calls:
        assert call.at >= not_before
        asked = max((r.retry_after for r in call.receipts if r.status == FAILED
                     and r.retry_after is not None), default=0.0)
        not_before = max(not_before, call.at + asked)
        if asked > CEILING:
            assert call is provider.calls[-1] and outcome.resume_at == call.at + asked


@settings(max_examples=50, deadline=None)
@given(**runs)
def test_nothing_is_half_written(world, script, max_batch, mixes):
    provider, _, rows = publish(world, script, max_batch, mixes)
    tried: Counter = Counter()
    accepted: set[int] = set()
    for call in provider.calls:
        tried.update(r.subscriber_id for r in call.receipts if r.tried)
        accepted |= {r.subscriber_id for r in call.receipts if r.status == ACCEPTED}
    assert not any(state == "in-flight" for state, _ in rows.values())
    assert {sid for sid, (state, _) in rows.items() if state == "sent"} == accepted
    assert all(attempts == tried[sid] <= MAX_ATTEMPTS for sid, (_, attempts) in rows.items())
