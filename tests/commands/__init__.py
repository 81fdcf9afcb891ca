"""Tests of publisher.commands: what the verbs do, beneath the CLI."""
