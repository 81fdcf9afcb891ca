"""Tests of publisher.store: readers, changes, the ledger, migrations, on both backends."""
