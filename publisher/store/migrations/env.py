"""Alembic's environment: run with the connection the store hands over (never a URL from an
ini file), against the store's metadata."""

from alembic import context

from publisher.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
