"""Alembic migrations of the store (SQLite and PostgreSQL alike); revision ids are the
store's schema version numbers, zero-padded. Versions 1-5 predate Alembic: an old SQLite
store is brought to version 6 by `upgrade.MIGRATIONS`, then stamped."""
