"""Tests of publisher.render: editions, checks, MJML lint, layouts, the archive."""
