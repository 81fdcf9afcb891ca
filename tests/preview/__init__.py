"""Tests of publisher.preview: `runletter preview` over real HTTP."""
