"""The built-in layouts, installed as the package `publisher.layouts` (see setup.py).

This file only makes the folder importable for importlib.resources in an editable install;
the templates are in email/ and web/.
"""
