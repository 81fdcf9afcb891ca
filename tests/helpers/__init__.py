"""Plain helpers the tests import: a copy of the sample and the CLI in-process (support), and
the servers the tests start (SMTP, moto, PostgreSQL, serve, a fault proxy), with their own tests."""
