"""The subscriber store, in SQLite or PostgreSQL, and all of the package's SQL: the `Store`
and its readers (`store`), what readers and providers change (`changes`), the delivery ledger
(`ledger`), bringing a store to the newest schema (`upgrade`, `migrations`), landing imported
readers (`landing`) and the CSV export (`export`). Address rules are in `publisher.emails`."""

from publisher.emails import normalize_email, validate_email
from publisher.store.changes import LEFT
from publisher.store.export import (
    EXPORT_COLUMNS,
    IMPORT_COLUMNS,
    neutralise_cell,
    restore_cell,
)
from publisher.store.records import MAX_NAME, STATUSES, AuditEntry, Subscriber, name_problem, now
from publisher.store.store import Store
from publisher.store.upgrade import LATEST, MIGRATIONS

__all__ = ["EXPORT_COLUMNS", "IMPORT_COLUMNS", "LATEST", "LEFT", "MAX_NAME", "MIGRATIONS",
           "STATUSES", "AuditEntry", "Store", "Subscriber", "name_problem",
           "neutralise_cell", "normalize_email", "now", "restore_cell", "validate_email"]
