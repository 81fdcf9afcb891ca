"""Render a resolved post into one Edition per goal: Markdown → Jinja2 → MJML → HTML.

Markdown runs once per post (markup.convert_blocks), Jinja2 and MJML once per segment,
and never per recipient: the Edition keeps per-recipient values as slots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jinja2
import mjml
from markupsafe import Markup

from publisher.config import Config
from publisher.content.media import is_url, under_content
from publisher.errors import RunletterError
from publisher.model import Edition, Exercise, Goal, Resolved, split_slots
from publisher.render.layouts import layout_environment
from publisher.render.markdown import Chunk, SlotTable, convert_blocks, for_goal
from publisher.render.urls import exercise_path, post_path


def utm_params(config: Config, slug: str, goal: str) -> dict[str, str]:
    """UTM parameters for a link into the archive from one goal's edition of a post."""
    params = {
        "utm_source": config.utm.source,
        "utm_medium": config.utm.medium,
        "utm_campaign": config.utm.campaign.replace("{slug}", slug),
        "utm_content": goal,
    }
    return {k: v for k, v in params.items() if v}


def add_query(url: str, params: dict[str, str]) -> str:
    """Add query parameters to a URL, keeping its own and its fragment."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def tag_archive_links(text: str, base_url: str, params: dict[str, str], html: bool) -> str:
    """Add UTM parameters to every link into the archive (href values, or bare URLs in text)."""
    base = re.escape(base_url)
    query = urlencode(params)
    tagged: dict[str, str] = {}  # an edition links the same pages many times

    def tag(url: str) -> str:
        if url not in tagged:
            path, hash_, fragment = url.partition("#")
            tagged[url] = (add_query(url, params) if "?" in path
                           else f"{path}?{query}{hash_}{fragment}")
        return tagged[url]

    if html:
        pattern = re.compile(rf'(href=")({base}(?:/[^"]*)?)(")')

        def replace(m: re.Match[str]) -> str:
            url = m.group(2).replace("&amp;", "&")
            return m.group(1) + tag(url).replace("&", "&amp;") + m.group(3)
    else:
        pattern = re.compile(rf"()({base}(?:/[^\s)>\]\"']*)?)()")

        def replace(m: re.Match[str]) -> str:
            return tag(m.group(2))

    return pattern.sub(replace, text)


@dataclass(frozen=True)
class Card:
    """What an exercise card shows in one goal's edition."""

    slug: str
    name: str
    url: str
    dose: str | None
    focus: tuple[str, ...]
    cues: tuple[str, ...]
    level: str
    equipment: tuple[str, ...]
    image: str | None
    video: str | None


def media_url(config: Config, ref: str | None) -> str | None:
    """An image or video reference as an absolute URL (paths under content/ go to the archive)."""
    if not ref:
        return None
    if is_url(ref):
        return ref
    return config.archive_url("media/" + under_content(ref))


def card_for(config: Config, exercise: Exercise, goal: str) -> Card:
    """An exercise card with the dose for this goal."""
    return Card(slug=exercise.slug, name=exercise.name,
                url=config.archive_url(exercise_path(exercise.slug)),
                dose=exercise.dose_for(goal), focus=exercise.focus, cues=exercise.cues,
                level=exercise.level, equipment=exercise.equipment,
                image=media_url(config, exercise.image), video=media_url(config, exercise.video))


@dataclass(frozen=True)
class Prepared:
    """A post with its Markdown converted once, ready to render any goal's edition."""

    resolved: Resolved
    chunks: tuple[Chunk, ...]
    slot_table: SlotTable
    markers: dict[str, str]


@dataclass(frozen=True)
class Rendition:
    """One goal's edition and the MJML source it was compiled from (what the linter reads)."""

    goal: Goal
    source: str
    edition: Edition


@dataclass(frozen=True)
class Rendered:
    """A post rendered once for every goal of its audience; check, the MJML linter and
    delivery all read this one object, so a publish renders each edition once."""

    resolved: Resolved
    renditions: tuple[Rendition, ...]  # in the audience's (goals.toml) order

    @property
    def editions(self) -> dict[str, Edition]:
        """Every edition by goal slug."""
        return {r.goal.slug: r.edition for r in self.renditions}


class EmailRenderer:
    """Renders editions with the newsletter's email layouts."""

    def __init__(self, config: Config):
        self.config = config
        self.env = layout_environment(config, "email")
        try:
            self.html_template = self.env.get_template("base.mjml.j2")
            self.text_template = self.env.get_template("base.txt.j2")
        except jinja2.TemplateSyntaxError as exc:
            raise RunletterError(f"{exc.filename or exc.name}:{exc.lineno}: layout error: "
                                 f"{exc.message}") from None
        except jinja2.TemplateNotFound as exc:
            raise RunletterError(f"layouts/email/{exc.name}: layout not found") from None

    def prepare(self, resolved: Resolved) -> Prepared:
        """Convert the post's Markdown once; every edition reuses it."""
        table = SlotTable()
        markers = {
            "unsubscribe_url": table.marker("unsubscribe_url"),
            "preferences_url": table.marker("preferences_url"),
        }
        post = resolved.post
        if post.gate:
            markers["ready_url"] = table.marker("ready_url")
        if post.calendar:
            markers["calendar_url"] = table.marker("calendar_url")
        chunks = convert_blocks(
            resolved, table, lambda slug: self.config.archive_url(exercise_path(slug)))
        return Prepared(resolved=resolved, chunks=chunks, slot_table=table, markers=markers)

    def sources(self, prepared: Prepared, goal: Goal) -> tuple[str, str]:
        """The MJML source and the plain text of one goal's edition, before MJML runs."""
        resolved = prepared.resolved
        post = resolved.post
        config = self.config
        chunks = for_goal(prepared.chunks, goal.slug)
        context = {
            "newsletter": config,
            "post": post,
            "goal": goal,
            "subject": post.subject,
            "preheader": post.preheader,
            "body_html": Markup("\n".join(c.html for c in chunks)),
            "body_text": "\n\n".join(c.text for c in chunks),
            "cards": [card_for(config, e, goal.slug) for e in resolved.exercises],
            # A sequence step has no page in the archive.
            "web_url": None if post.is_step else config.archive_url(post_path(post.slug)),
            "archive_url": config.archive_url(),
            "ready_url": None,
            "calendar_url": None,
            **prepared.markers,
        }
        try:
            return self.html_template.render(context), self.text_template.render(context)
        except jinja2.TemplateError as exc:
            raise RunletterError(f"layouts/email: layout error while rendering "
                                 f"'{post.slug}' for {goal.slug}: {exc}") from None

    def edition(self, prepared: Prepared, goal: Goal,
                sources: tuple[str, str] | None = None) -> Edition:
        """Render one goal's edition of a prepared post (from its `sources`, when given)."""
        post = prepared.resolved.post
        source, text = sources or self.sources(prepared, goal)
        try:
            html = mjml.mjml2html(source)
        except Exception as exc:  # MRML reports bad MJML as a plain exception
            raise RunletterError(f"layouts/email/base.mjml.j2: MJML could not be rendered for "
                                 f"'{post.slug}' ({goal.slug}): {exc}") from None
        params = utm_params(self.config, post.slug, goal.slug)
        html = tag_archive_links(html, self.config.base_url, params, html=True)
        text = tag_archive_links(text, self.config.base_url, params, html=False)
        slots, pattern = prepared.slot_table.slots, prepared.slot_table.pattern
        return Edition(post_slug=post.slug, goal=goal.slug, subject=post.subject,
                       preheader=post.preheader, html_parts=split_slots(html, slots, pattern),
                       text_parts=split_slots(text, slots, pattern))

    def editions(self, resolved: Resolved) -> dict[str, Edition]:
        """Every edition of a post, one per goal in its audience."""
        prepared = self.prepare(resolved)
        return {g.slug: self.edition(prepared, g) for g in resolved.audience}

    def render(self, resolved: Resolved) -> Rendered:
        """Every edition of a post with its MJML source: Markdown once, Jinja2 and MJML once
        per goal."""
        prepared = self.prepare(resolved)
        renditions = []
        for goal in resolved.audience:
            sources = self.sources(prepared, goal)
            renditions.append(Rendition(goal, sources[0], self.edition(prepared, goal, sources)))
        return Rendered(resolved=resolved, renditions=tuple(renditions))
