"""Tests of publisher.delivery.providers: each provider against a real or contract server."""
