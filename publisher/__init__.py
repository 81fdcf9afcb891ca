"""Runletter: newsletter-as-code for running coaches."""

__version__ = "0.1.0"
