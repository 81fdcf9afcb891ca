"""Arrivals: readers brought from another tool's export (Mailchimp, Substack, Ghost, listmonk,
Buttondown, Kit) or Runletter's own CSV, with every opt-out kept.

Each format is data (`base.Format`: how to recognise it, which columns feed which field, its
status table) in a module of its own; `importer.import_file` streams a file through one of
them into the store."""

from publisher.arrivals.base import FIELDS, Format
from publisher.arrivals.importer import import_file
from publisher.arrivals.plan import ArrivalOptions
from publisher.arrivals.registry import BY_NAME, FORMATS
from publisher.arrivals.report import ArrivalReport

__all__ = ["BY_NAME", "FIELDS", "FORMATS", "ArrivalOptions", "ArrivalReport", "Format",
           "import_file"]
