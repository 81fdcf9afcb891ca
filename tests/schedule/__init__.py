"""Tests of publisher.schedule: the pure rules and the agenda over a real store."""
