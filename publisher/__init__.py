"""Runletter: newsletter-as-code for running coaches."""
