"""Where each page lives in the web archive: one place for the paths that emails, pages,
feeds and checks all link to."""

from __future__ import annotations


def post_path(slug: str) -> str:
    """Archive path of a post page."""
    return f"posts/{slug}/"


def exercise_path(slug: str) -> str:
    """Archive path of an exercise page."""
    return f"exercises/{slug}/"


def goal_path(slug: str) -> str:
    """Archive path of a goal's page."""
    return f"goals/{slug}/"
