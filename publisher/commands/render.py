"""`runletter render`: one goal's edition of a post, as HTML or plain text."""

from __future__ import annotations

from publisher.errors import Finding, RunletterError, suggest
from publisher.model import Edition, Goal, Resolved
from publisher.project import Project
from publisher.render.email import EmailRenderer

# Without a reader the links that are theirs alone have no value; say what goes there.
PLACEHOLDERS = {"unsubscribe_url": "<unsubscribe link>", "preferences_url": "<preferences link>"}


def render(project: Project, post: str, goal: str | None = None) -> Edition:
    """One edition of POST (a slug or a path): `goal`'s, or general's, or the first goal's."""
    resolved = project.resolve(project.post(post))
    renderer = EmailRenderer(project.config)
    return renderer.edition(renderer.prepare(resolved), edition_goal(project, resolved, goal))


def edition_goal(project: Project, resolved: Resolved, slug: str | None) -> Goal:
    """The goal whose edition to show; an unknown goal or one outside the audience is an error."""
    slugs = [g.slug for g in resolved.audience]
    if slug is None:
        slug = "general" if "general" in slugs else slugs[0]
    goal = project.goals.get(slug)
    if goal is None:
        known = project.goals.slugs
        raise RunletterError(f"unknown goal '{slug}'" + suggest(slug, known)
                             + f"; goals are: {', '.join(known)}")
    if slug not in slugs:
        raise RunletterError(Finding(resolved.post.source.display, None,
                                     f"the post's audience is {', '.join(slugs)}; "
                                     f"there is no '{slug}' edition"))
    return goal


def edition_body(edition: Edition, text: bool) -> str:
    """What `render` prints: the HTML, or the plain text with placeholders for the links."""
    return edition.text(PLACEHOLDERS) if text else edition.html()
