"""The formats `subscribers import` reads, in the order `--from auto` tries them."""

from __future__ import annotations

from .base import Format
from .buttondown import BUTTONDOWN
from .ghost import GHOST
from .kit import KIT
from .listmonk import LISTMONK
from .mailchimp import MAILCHIMP
from .runletter import RUNLETTER
from .substack import SUBSTACK

# The tools first: each has columns of its own; Runletter's few columns come last. Ghost
# before Substack: a Ghost export with an `email_disabled` column must not read as Substack.
FORMATS: tuple[Format, ...] = (MAILCHIMP, GHOST, SUBSTACK, LISTMONK, BUTTONDOWN, KIT, RUNLETTER)
BY_NAME = {f.name: f for f in FORMATS}


def detect(keys: frozenset[str]) -> Format | None:
    """The first format whose columns the header has, or None."""
    return next((f for f in FORMATS if f.detect(keys)), None)
