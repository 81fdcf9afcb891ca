"""An anonymous signup for an address already on the list only proposes details: over real
HTTP (`runletter serve` in a subprocess), on each backend, a stranger's form never rewrites
a stored reader's name, goal, race or zone; the details take effect only when the
confirmation link of that very signup is pressed, and bounced or complained addresses get
no mail at all."""

from __future__ import annotations

import itertools
import time

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from publisher.store import name_problem
from publisher.store.records import GOAL_RE
from tests.helpers.live_server import (
    CONFIRM_HOURS,
    LiveServer,
    link_in,
    messages_to,
    press_confirm,
    same_page,
    signup,
    start_site,
    token_for,
)
from tests.helpers.support import copy_sample, free_port
from tests.samples import FAST, ZONE

STRANGER = {"first_name": "Click evil.example now", "goal": "ultra",
            "race_date": "2031-01-01", "race_name": "Free prizes", "timezone": "Asia/Tokyo"}
OWN = {"first_name": "Maren", "goal": "5k", "race_date": "2027-03-28",
       "race_name": "Valencia Marathon", "timezone": ZONE}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, module_database: str):
    """One server for the module's tests, on each backend in turn."""
    server = start_site(copy_sample(tmp_path_factory.mktemp("proposals") / "news"),
                        free_port(), module_database)
    try:
        yield server
    finally:
        server.stop()


def stored_reader(site: LiveServer, address: str, state: str):
    """A reader with their own details, in `state` ("paused" is the pause model's)."""
    with site.store() as store:
        reader = store.add(address, status="active" if state == "paused" else state,
                           **OWN)
        if state == "paused":
            store.pause(reader.id, "preferences page")
        return store.by_id(reader.id)


def details(site: LiveServer, address: str) -> dict[str, str]:
    reader = site.reader(address)
    return {"first_name": reader.first_name, "goal": reader.goal,
            "race_date": reader.race_date or "", "race_name": reader.race_name,
            "timezone": reader.timezone}


def stranger_signs_up(site: LiveServer, address: str) -> requests.Response:
    fields = dict(STRANGER)
    return signup(site, address, fields.pop("first_name"), fields.pop("goal"), **fields)


@pytest.mark.parametrize("state", ["pending", "active", "paused", "unsubscribed", "bounced",
                                   "complained"])
def test_a_signup_for_a_stored_address_changes_none_of_its_details(site, state):
    address = f"stored.{state}@example.net"
    before = stored_reader(site, address, state)
    assert stranger_signs_up(site, address).status_code == 200
    assert details(site, address) == OWN
    assert site.reader(address).status == before.status


def test_a_resume_after_a_strangers_signup_keeps_the_readers_own_name(site):
    address = "paused.reader@example.net"
    stored_reader(site, address, "paused")
    stranger_signs_up(site, address)
    with site.store() as store:
        assert store.resume(store.get(address).id, "preferences page")
    assert details(site, address) == OWN
    assert "Click" not in str(messages_to(site.root, address)[-1]["To"])


def test_a_paused_reader_who_signs_up_is_told_and_sent_their_preferences_link(site):
    address = "paused.again@example.net"
    stored_reader(site, address, "paused")
    stranger_signs_up(site, address)
    [message] = messages_to(site.root, address)
    assert "already subscribed" in message["Subject"]
    assert link_in(message, "preferences")


def test_confirming_the_link_of_a_signup_applies_the_details_it_proposed(site):
    address = "coming.back@example.net"
    stored_reader(site, address, "unsubscribed")
    stranger_signs_up(site, address)  # the mailbox's owner, this time: they press the link
    assert details(site, address) == OWN
    assert press_confirm(link_in(messages_to(site.root, address)[-1], "confirm")
                         ).status_code == 200
    assert site.reader(address).status == "active"
    assert details(site, address) == STRANGER


def test_an_older_confirmation_link_does_not_apply_a_later_signups_details(site):
    address = "first.signup@example.net"
    stored_reader(site, address, "pending")
    own_link = site.url("/confirm/" + token_for(site, "confirm", address, CONFIRM_HOURS * 3600))
    stranger_signs_up(site, address)
    assert press_confirm(own_link).status_code == 200
    assert site.reader(address).status == "active"
    assert details(site, address) == OWN
    with site.store() as store:
        assert store.proposals_of(store.get(address).id) == 0  # their links now change nothing


def test_a_confirmed_reader_keeps_their_details_even_when_a_proposal_link_is_pressed(site):
    address = "pending.then.active@example.net"
    stored_reader(site, address, "pending")
    stranger_signs_up(site, address)
    proposal_link = link_in(messages_to(site.root, address)[-1], "confirm")
    with site.store() as store:
        store.confirm(store.get(address).id, 0.0, "signup form", None)  # their own link
    assert requests.post(proposal_link, timeout=10).status_code == 200  # "already confirmed"
    assert details(site, address) == OWN


@pytest.mark.parametrize("state", ["bounced", "complained"])
def test_a_bounced_or_complained_address_gets_no_mail_and_the_page_of_a_first_signup(
        site, state):
    address = f"gone.{state}@example.net"
    stored_reader(site, address, state)
    first = stranger_signs_up(site, f"brand.new.{state}@example.net")
    again = stranger_signs_up(site, address)
    assert same_page(again) == same_page(first)
    assert messages_to(site.root, address) == []
    with site.store() as store:
        assert store.proposals_of(store.get(address).id) == 0


NUMBERS = itertools.count()


@FAST
@given(name=st.text(max_size=100).filter(lambda n: name_problem(n.strip()) is None),
       goal=st.from_regex(GOAL_RE, fullmatch=True).filter(lambda g: len(g) <= 40),
       race_name=st.text(alphabet=st.characters(categories=("L", "N", "Zs")), max_size=120))
def test_a_proposal_changes_nothing_until_the_confirmation_naming_it_applies_it(
        store, name, goal, race_name):
    reader = store.add(f"proposer{next(NUMBERS)}@example.net", status="unsubscribed", **OWN)
    proposal = store.propose(reader.id, goal=goal, first_name=name, race_name=race_name)
    assert store.by_id(reader.id) == reader
    assert store.confirm(reader.id, time.time() + 1, "signup form", None, proposal) == (
        "confirmed")
    after = store.by_id(reader.id)
    assert (after.first_name, after.goal, after.race_name, after.timezone) == (
        name.strip(), goal, race_name.strip(), ZONE)  # no zone proposed: theirs stays
