"""Tests of publisher.cli: the `runletter` verbs and their voice."""
