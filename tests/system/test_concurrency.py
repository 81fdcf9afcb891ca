"""Concurrency, against SQLite and a real PostgreSQL: two `publish` processes on one post at
once share it out and send each reader exactly one copy; `serve` with 4 workers takes 2,000
one-click unsubscribes from 20 clients during a publish, loses none, and sends to nobody who
left."""

from __future__ import annotations

import math
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from publisher.config import ENV as DATABASE_URL_ENV
from publisher.delivery.address import Addresser
from publisher.delivery.tokens import Signer
from publisher.project import open_project
from publisher.store import Store
from publisher.store.ledger import Ledger
from tests.contract import running
from tests.helpers.live_server import LiveServer, configure
from tests.helpers.support import claims, copy_sample, fill_readers, free_port, log_claims
from tests.samples import HIP_DRIVE, HIP_DRIVE_GOALS, SECRET, STORE

PUBLISHERS = 2
SHARED_READERS = 3000  # the post's audience when two publishes share it out
SERVE_READERS = 4000  # the post's audience while readers unsubscribe
LEAVING = 2000  # of them, who click their List-Unsubscribe (one-click) during the publish
CLIENTS = 20  # threads clicking at once
SERVE_WORKERS = 4
PROCESS_SECONDS = 300  # the bound on any one publish process
CALL_DELAY = 0.2  # seconds the provider takes over each call, so the runs interleave
SERVE_CALL_DELAY = 1.0  # the same while readers unsubscribe: the publish outlasts the clicks
SENT = re.compile(r"^sent (\d+) messages? in", re.MULTILINE)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, sample_root) -> str:
    """The sample newsletter's store: its SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{sample_root / STORE}"
    return request.getfixturevalue("postgres_url")


def publish_env(url: str, provider) -> dict[str, str]:
    """A publish process's environment: this store, the Postmark contract server."""
    return {**os.environ, "RUNLETTER_SECRET": SECRET, DATABASE_URL_ENV: url,
            "RUNLETTER_POSTMARK_BASE_URL": provider.url,
            "RUNLETTER_POSTMARK_SERVER_TOKEN": provider.key}


def start_publish(root, env: dict[str, str]) -> subprocess.Popen:
    """`runletter publish HIP_DRIVE --yes` via Postmark, as a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "publisher.cli", "publish", HIP_DRIVE, "--yes", "--provider",
         "postmark"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def finish(runs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    """Each run's exit code and output once it has ended (killed if it outlasts
    PROCESS_SECONDS)."""
    outputs = []
    try:
        for run in runs:
            output = run.communicate(timeout=PROCESS_SECONDS)[0]
            outputs.append((run.returncode, output))
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=10)
    return outputs


def ledger_states(url: str) -> dict[str, str]:
    """Each reader's ledger state for the post, by address."""
    with Store.open(url) as store:
        return dict(store.conn.execute("SELECT email, state FROM deliveries WHERE post = :post",
                                       {"post": HIP_DRIVE}).fetchall())


def test_two_publishes_at_once_share_the_post_out_and_send_each_reader_one_copy(
        sample_root, store_url):
    readers = fill_readers(store_url, SHARED_READERS, HIP_DRIVE_GOALS)
    with running("postmark", count_only=True) as provider:
        # No call is answered until both processes have one out; then each is a little slow.
        provider.pace(delay=CALL_DELAY, hold_until=PUBLISHERS)
        env = publish_env(store_url, provider)
        outputs = finish([start_publish(sample_root, env) for _ in range(PUBLISHERS)])
        copies = provider.counts()
    assert [code for code, _ in outputs] == [0] * PUBLISHERS, "\n".join(o for _, o in outputs)
    shares = [int(m[1]) if (m := SENT.search(output)) else 0 for _, output in outputs]
    assert min(shares) > 0, f"both publishes must have sent a share: {outputs}"
    assert sum(shares) == SHARED_READERS
    assert copies == Counter({address: 1 for _, address in readers})
    assert Counter(ledger_states(store_url).values()) == {"sent": SHARED_READERS}


# -- serve's workers and 2,000 one-click unsubscribes during a publish -----------------------


@dataclass(frozen=True)
class Click:
    """One reader's one-click unsubscribe: the answer's status and when it came back."""

    subscriber_id: int
    address: str
    status: int
    answered_at: float  # unix seconds


@dataclass(frozen=True)
class Unsubscribing:
    """What a publish and 2,000 one-click unsubscribes at once left behind."""

    url: str
    readers: list[tuple[int, str]]
    clicks: list[Click]
    publish: tuple[int, str]  # the publish's exit code and output
    copies: Counter


def click_all(urls: list[tuple[int, str, str]]) -> list[Click]:
    """POST `List-Unsubscribe=One-Click` to every URL from CLIENTS threads at once."""
    clicks: list[Click] = []
    lock = threading.Lock()

    def client(share: list[tuple[int, str, str]]) -> None:
        with requests.Session() as session:
            session.trust_env = False
            for sid, address, url in share:
                status = session.post(url, data={"List-Unsubscribe": "One-Click"},
                                      timeout=60).status_code
                with lock:
                    clicks.append(Click(sid, address, status, time.time()))

    threads = [threading.Thread(target=client, args=(urls[n::CLIENTS],), daemon=True)
               for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROCESS_SECONDS)
    return clicks


def unsubscribe_links(root, leaving: list[tuple[int, str]]) -> list[tuple[int, str, str]]:
    """Each leaving reader's List-Unsubscribe URL, as their message carries it."""
    addresser = Addresser(open_project(root).config, Signer(SECRET))
    return [(sid, address,
             addresser.values_for(HIP_DRIVE, sid, address, "")["unsubscribe_url"])
            for sid, address in leaving]


def wait_for_first_call(provider, run: subprocess.Popen) -> None:
    """Until the publish has its first call out (so the clicks land while it sends)."""
    deadline = time.monotonic() + PROCESS_SECONDS
    while not provider.requests and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert provider.requests, "the publish never called the provider"


def unsubscribe_during_a_publish(root, url: str) -> Unsubscribing:
    """4,000 readers; `serve` with 4 workers; a publish to all of them while 2,000 click their
    one-click unsubscribe link from 20 clients."""
    port = free_port()
    configure(root, port, workers=SERVE_WORKERS)
    readers = fill_readers(url, SERVE_READERS, HIP_DRIVE_GOALS)
    log_claims(url)
    leaving = random.Random(8058).sample(readers, LEAVING)
    links = unsubscribe_links(root, leaving)
    site = LiveServer(root, port, {DATABASE_URL_ENV: url}, workers=SERVE_WORKERS)
    with running("postmark", count_only=True) as provider:
        provider.pace(delay=SERVE_CALL_DELAY)
        site.start()
        try:
            run = start_publish(root, publish_env(url, provider))
            try:
                wait_for_first_call(provider, run)
                clicks = click_all(links)
            finally:
                [publish] = finish([run])
        finally:
            site.stop()
        return Unsubscribing(url, readers, clicks, publish, provider.counts())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def unsubscribing(request, tmp_path_factory) -> Iterator[Unsubscribing]:
    """The run of unsubscribe_during_a_publish, once per store (the tests read it after)."""
    root = copy_sample(tmp_path_factory.mktemp("race") / "news")
    if request.param == "sqlite":
        yield unsubscribe_during_a_publish(root, f"sqlite:///{root / STORE}")
        return
    server = request.getfixturevalue("postgres_server")
    name = f"test_{uuid.uuid4().hex}"
    try:
        yield unsubscribe_during_a_publish(root, server.create_database(name))
    finally:
        server.drop_database(name)


def test_every_one_click_unsubscribe_during_a_publish_is_kept(unsubscribing):
    clicks = unsubscribing.clicks
    assert (len(clicks), Counter(c.status for c in clicks)) == (LEAVING, {200: LEAVING})
    with Store.open(unsubscribing.url) as store:
        statuses = dict(store.conn.execute("SELECT id, status FROM subscribers").fetchall())
        audited = Counter(store.conn.execute(
            "SELECT subscriber_id, reason FROM audit WHERE new_status = 'unsubscribed'"
        ).fetchall())
    assert {c.subscriber_id: statuses[c.subscriber_id] for c in clicks} == {
        c.subscriber_id: "unsubscribed" for c in clicks}
    assert audited == Counter({(c.subscriber_id, "one-click unsubscribe (RFC 8058)"): 1
                               for c in clicks})


def test_nobody_who_left_during_a_publish_is_sent_to(unsubscribing):
    code, output = unsubscribing.publish
    assert code == 0, output
    states = ledger_states(unsubscribing.url)
    claimed = claims(unsubscribing.url)
    copies = unsubscribing.copies
    left = {c.address: c for c in unsubscribing.clicks}
    # Each reader who left was skipped ('rejected', nothing received), or their row had been
    # claimed before their unsubscribe answered: a call already on its way may still reach
    # them, but a claim that began after their unsubscribe committed must have seen them go.
    late = {address: (claimed.get(c.subscriber_id), c.answered_at)
            for address, c in left.items() if states[address] != "rejected"
            and min(claimed.get(c.subscriber_id, [math.inf])) >= c.answered_at}
    assert late == {}
    assert {address: copies[address] for address in left} == {
        address: int(states[address] == "sent") for address in left}
    outcome = Counter(states[address] for address in left)
    assert outcome["rejected"] and outcome["sent"], f"the clicks must overlap the run: {outcome}"
    stayed = {address for _, address in unsubscribing.readers} - set(left)
    assert {address: (states[address], copies[address]) for address in stayed} == {
        address: ("sent", 1) for address in stayed}


# -- one race, step by step: a publish reading rows while another marks them -----------------


def test_a_row_another_publish_just_claimed_stays_in_flight_when_its_reader_leaves(
        postgres_url):
    [(sid, _)] = fill_readers(postgres_url, 1, ["marathon"])
    with Store.open(postgres_url) as one, Store.open(postgres_url) as other, \
            Store.open(postgres_url) as reader_side:
        Ledger(one).plan(HIP_DRIVE, ["marathon"])
        rows = Ledger(one).peek(HIP_DRIVE, "marathon", 10, 5, time.time())
        theirs = Ledger(other).peek(HIP_DRIVE, "marathon", 10, 5, time.time())
        with one.transaction():  # the claim is made, not yet committed ...
            assert Ledger(one).mark_in_flight(HIP_DRIVE, rows).ids == {sid}
            reader_side.unsubscribe(sid, "one-click unsubscribe (RFC 8058)")  # ... they leave
            # The other publish read the row as planned, its reader then active; its mark
            # finds the row locked and skips it: it neither waits nor settles it as rejected.
            assert Ledger(other).mark_in_flight(HIP_DRIVE, theirs).ids == set()
        state = one.conn.execute("SELECT state FROM deliveries WHERE subscriber_id = :sid",
                                 {"sid": sid}).scalar()
    assert state == "in-flight"  # its call is on its way: not 'rejected' behind its back
