"""Tests of publisher.arrivals: readers imported from other platforms' exports."""
