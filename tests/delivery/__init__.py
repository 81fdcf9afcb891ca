"""Tests of publisher.delivery: addressing, tokens, and sending a post."""
