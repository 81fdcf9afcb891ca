"""The subscriber store, in SQLite: readers (`readers`), what readers and providers change
(`changes`), the schema and its migrations (`schema`), CSV import and export (`csvio`).
Address rules are in `publisher.emails`."""

from publisher.emails import normalize_email, validate_email
from publisher.store.changes import LEFT
from publisher.store.csvio import (
    EXPORT_COLUMNS,
    IMPORT_COLUMNS,
    ImportReport,
    neutralise_cell,
    restore_cell,
)
from publisher.store.readers import (
    MAX_NAME,
    STATUSES,
    AuditEntry,
    Store,
    Subscriber,
    name_problem,
    now,
)
from publisher.store.schema import LATEST, MIGRATIONS

__all__ = ["EXPORT_COLUMNS", "IMPORT_COLUMNS", "LATEST", "LEFT", "MAX_NAME", "MIGRATIONS",
           "STATUSES", "AuditEntry", "ImportReport", "Store", "Subscriber", "name_problem",
           "neutralise_cell", "normalize_email", "now", "restore_cell", "validate_email"]
