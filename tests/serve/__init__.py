"""Tests of publisher.serve: the app in-process and the server over real HTTP."""
