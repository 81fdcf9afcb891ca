"""The formats `subscribers import` reads, in the order `--from auto` tries them."""

from __future__ import annotations

from publisher.arrivals.base import Format
from publisher.arrivals.buttondown import BUTTONDOWN
from publisher.arrivals.ghost import GHOST
from publisher.arrivals.kit import KIT
from publisher.arrivals.listmonk import LISTMONK
from publisher.arrivals.mailchimp import MAILCHIMP
from publisher.arrivals.runletter import RUNLETTER
from publisher.arrivals.substack import SUBSTACK

# The tools first: each has columns of its own; Runletter's few columns come last. Ghost
# before Substack: a Ghost export with an `email_disabled` column must not read as Substack.
FORMATS: tuple[Format, ...] = (MAILCHIMP, GHOST, SUBSTACK, LISTMONK, BUTTONDOWN, KIT, RUNLETTER)
BY_NAME = {f.name: f for f in FORMATS}


def detect(keys: frozenset[str]) -> Format | None:
    """The first format whose columns the header has, or None."""
    return next((f for f in FORMATS if f.detect(keys)), None)
