"""Build the web archive: a page per post, exercise and goal, and Atom feeds.

Pages come from the same Resolved posts as the emails, so the two cannot drift. Links
between pages are relative, so `site/` works from a web server or opened as files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import markdown
from markupsafe import Markup

from publisher import __version__
from publisher.config import Config
from publisher.content.media import is_url, media_problem, under_content
from publisher.content.syntax import EXERCISE_LINK
from publisher.errors import Finding, RunletterError
from publisher.model import Catalogue, Exercise, Goal, Goals, Post, Resolved, fill, split_slots
from publisher.render.cache import beside, cache_path, load_cache, save_cache
from publisher.render.layouts import layout_environment
from publisher.render.markdown import (
    Chunk,
    SlotTable,
    convert,
    convert_blocks,
    for_goal,
    new_markdown,
)
from publisher.render.urls import exercise_path, goal_path, post_path

ATOM = "http://www.w3.org/2005/Atom"
XML = "http://www.w3.org/XML/1998/namespace"
FEED_ENTRIES = 50  # newest posts per feed, as Hugo and Jekyll cap theirs


@dataclass(frozen=True)
class WebPost:
    """A post as the archive shows it: every block, goal blocks marked."""

    resolved: Resolved
    chunks: tuple[Chunk, ...]
    html: str  # the whole body, relative links, goal blocks marked
    uses: frozenset[str]  # exercise slugs shown as cards or linked inline

    @property
    def post(self):
        """The Post."""
        return self.resolved.post


def _fill_defaults(html: str, table: SlotTable) -> str:
    """On the web every reader is anonymous: merge fields show their fallback."""
    return fill(split_slots(html, table.slots, table.pattern), {}, escape=True)


def goal_labels(goals: Goals, slugs: Iterable[str]) -> str:
    """'Marathon and Ultra' for a goal block's label."""
    labels = [g.label for s in slugs if (g := goals.get(s))]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def web_body(resolved: Resolved, link_prefix: str, md=None) -> tuple[tuple[Chunk, ...], str]:
    """Convert a post's blocks for the web; goal-only blocks wrapped and labelled."""
    table = SlotTable()
    chunks = convert_blocks(resolved, table, lambda s: f"{link_prefix}{exercise_path(s)}", md)
    parts = []
    for chunk in chunks:
        body = _fill_defaults(chunk.html, table)
        if chunk.goals:
            label = Markup.escape(f"Only in the {goal_labels(resolved.goals, chunk.goals)} "
                                  f'edition{"s" if len(chunk.goals) > 1 else ""}')
            # The label names the aside too: screen readers list landmarks by their name.
            parts.append(f'<aside class="goal-only" data-goals="{" ".join(chunk.goals)}" '
                         f'aria-label="{label}"><p class="goal-only-label">{label}</p>\n'
                         f'{body}</aside>')
        else:
            parts.append(body)
    filled = tuple(Chunk(_fill_defaults(c.html, table), c.text, c.goals) for c in chunks)
    return filled, "\n".join(parts)


def exercises_used(resolved: Resolved) -> frozenset[str]:
    """Slugs a post shows as cards or links inline."""
    inline = {m.group(1) for b in resolved.blocks for m in EXERCISE_LINK.finditer(b.markdown)}
    return frozenset(inline | set(resolved.post.exercises))


def linked_both_ways(exercise: Exercise, catalogue: Catalogue) -> tuple[list[Exercise],
                                                                         list[Exercise]]:
    """Progressions and regressions, including those declared from the other side."""
    ups = list(exercise.progressions)
    downs = list(exercise.regressions)
    for other in catalogue.exercises.values():
        if exercise.slug in other.regressions and other.slug not in ups:
            ups.append(other.slug)
        if exercise.slug in other.progressions and other.slug not in downs:
            downs.append(other.slug)
    return ([catalogue.exercises[s] for s in ups if s in catalogue.exercises],
            [catalogue.exercises[s] for s in downs if s in catalogue.exercises])


def _when(date: dt.date) -> str:
    return dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC).isoformat()


def atom_feed(config: Config, title: str, feed_path: str, page_path: str,
              entries: list[tuple[WebPost, str]]) -> bytes:
    """An Atom 1.0 feed; each entry is a post and the HTML to show for it."""
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            element.text = text
        return element

    # Feed readers pick fonts, hyphenation and screen-reader voices by language.
    feed = ET.Element(f"{{{ATOM}}}feed", {f"{{{XML}}}lang": config.language})
    sub(feed, "title", title)
    sub(feed, "id", config.archive_url(feed_path))
    sub(feed, "link", rel="self", href=config.archive_url(feed_path))
    sub(feed, "link", rel="alternate", href=config.archive_url(page_path))
    newest = max((w.post.date for w, _ in entries), default=dt.date(1970, 1, 1))
    sub(feed, "updated", _when(newest))
    author = sub(feed, "author")
    sub(author, "name", config.sender_name)
    for web, html in entries:
        post = web.post
        entry = sub(feed, "entry")
        url = config.archive_url(post_path(post.slug))
        sub(entry, "title", post.title)
        sub(entry, "id", url)
        sub(entry, "link", rel="alternate", href=url)
        sub(entry, "updated", _when(post.date))
        sub(entry, "published", _when(post.date))
        sub(entry, "category", term=post.topic)
        if post.summary:
            sub(entry, "summary", post.summary)
        sub(entry, "content", html, type="html")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _id(item: Post | Exercise) -> tuple[str, int, int]:
    """What identifies a post's or exercise's content: its file and that file's stamp (a
    stamp-less item, built in memory, is identified by everything it holds)."""
    stamp = item.source.stamp
    if stamp == (0, 0):
        return (repr(item), 0, 0)
    return (str(item.source.path), *stamp)


def _digest(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=16).hexdigest()


class BuildCache:
    """What the last build made: converted post bodies by content, and a fingerprint of
    each page's inputs, so a rebuild redoes only what changed."""

    def __init__(self, path: Path | None):
        self.path = path
        cached = load_cache(path) or ({}, {})
        self.bodies: dict[str, tuple[tuple[Chunk, ...], str]] = cached[0]
        self.pages: dict[str, str] = cached[1]

    def save(self, used_bodies: set[str]) -> None:
        """Keep only the bodies this build used."""
        save_cache(self.path, ({k: v for k, v in self.bodies.items() if k in used_bodies},
                               self.pages))


class SiteBuilder:
    """Writes site/ from resolved posts and the catalogue."""

    def __init__(self, config: Config, goals: Goals, catalogue: Catalogue,
                 cache: bool = True):
        self.config = config
        self.goals = goals
        self.catalogue = catalogue
        self.env = layout_environment(config, "web")
        self._md: markdown.Markdown | None = None
        self.written = 0
        self.rendered = 0
        self.cache = BuildCache(cache_path(config.root, "site") if cache else None)
        self._used_bodies: set[str] = set()
        self._global = _digest(__version__, self._layout_sources(), config, goals)

    @property
    def md(self) -> markdown.Markdown:
        """One Markdown converter, made on first use (a cached rebuild may need none)."""
        if self._md is None:
            self._md = new_markdown()
        return self._md

    def _layout_sources(self) -> list[tuple[str, str]]:
        loader = self.env.loader
        return [(name, loader.get_source(self.env, name)[0])  # type: ignore[union-attr]
                for name in sorted(self.env.list_templates())]

    def _page(self, template: str, out: Path, path: str, key: str,
              context: Callable[[], dict]) -> None:
        """Render a page unless its inputs (key) are the same as last build's."""
        target = out / path / "index.html" if path else out / "index.html"
        fingerprint = _digest(self._global, template, key)
        if self.cache.pages.get(str(target)) == fingerprint and target.is_file():
            return
        depth = path.count("/") + 1 if path else 0  # every page is <path>/index.html
        root = "../" * depth
        try:
            html = self.env.get_template(template).render(
                newsletter=self.config, goals=self.goals, root=root,
                url=lambda p: root + p, **context())
        except jinja2.TemplateError as exc:
            raise RunletterError(f"layouts/web/{template}: layout error: {exc}") from None
        self.rendered += 1
        self._write(target, html.encode())
        self.cache.pages[str(target)] = fingerprint

    def _write(self, target: Path, data: bytes) -> None:
        # Only touch files whose bytes changed, so rebuilds are cheap and sync tools idle.
        if target.exists() and target.read_bytes() == data:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = beside(target)
        tmp.write_bytes(data)
        tmp.replace(target)
        self.written += 1

    def web_post(self, resolved: Resolved) -> WebPost:
        """A post's web body (links relative to its page), converted once per content."""
        uses = exercises_used(resolved)
        names = sorted((s, resolved.catalogue.exercises[s].name) for s in uses
                       if s in resolved.catalogue.exercises)
        key = _digest(_id(resolved.post), names, [g.label for g in resolved.goals])
        if key not in self.cache.bodies:
            self.cache.bodies[key] = web_body(resolved, "../../", self.md)
        self._used_bodies.add(key)
        chunks, html = self.cache.bodies[key]
        return WebPost(resolved=resolved, chunks=chunks, html=html, uses=uses)

    def build(self, posts: Iterable[Resolved], out: Path | None = None) -> Path:
        """Write every page and feed; return the site folder."""
        out = out or self.config.site_dir
        webs = [self.web_post(r) for r in posts]
        webs.sort(key=lambda w: (w.post.date, w.post.slug), reverse=True)
        listing = [(w.post.slug, w.post.title, w.post.date, w.post.topic, w.post.summary)
                   for w in webs]
        self._page("index.html.j2", out, "", _digest(listing),
                   lambda: {"posts": webs, "title": self.config.name})
        # Each exercise's digest once: post pages show cards, exercise pages link others.
        exercise_keys = {slug: _id(e) for slug, e in self.catalogue.exercises.items()}
        for web in webs:
            self._page("post.html.j2", out, post_path(web.post.slug).rstrip("/"),
                       _digest(_id(web.post), sorted(exercise_keys[s] for s in web.uses
                                                     if s in exercise_keys),
                               [g.slug for g in web.resolved.audience]),
                       lambda web=web: {"web": web, "post": web.post, "body": Markup(web.html),
                                        "exercises": web.resolved.exercises,
                                        "audience": web.resolved.audience,
                                        "title": web.post.title})
        self._page("exercises.html.j2", out, "exercises", _digest(list(self.catalogue)),
                   lambda: {"exercises": list(self.catalogue), "title": "Exercises"})
        posts_using: dict[str, list[WebPost]] = {}
        for web in webs:  # newest first, as the pages list them
            for slug in web.uses:
                posts_using.setdefault(slug, []).append(web)
        for exercise in self.catalogue:
            ups, downs = linked_both_ways(exercise, self.catalogue)
            used_in = posts_using.get(exercise.slug, [])
            image = self._media(exercise, out, 2)
            self._page("exercise.html.j2", out, exercise_path(exercise.slug).rstrip("/"),
                       _digest(exercise_keys[exercise.slug],
                               [(e.slug, e.name) for e in ups + downs],
                               [(w.post.slug, w.post.title) for w in used_in], image),
                       lambda exercise=exercise, ups=ups, downs=downs, used_in=used_in,
                       image=image: {
                           "exercise": exercise, "progressions": ups, "regressions": downs,
                           "body": Markup(convert(self.md, exercise.body)),
                           "used_in": used_in, "title": exercise.name, "image": image,
                           "doses": self._doses(exercise)})
        audiences = [{g.slug for g in w.resolved.audience} for w in webs]
        for goal in self.goals:
            mine = [w for w, slugs in zip(webs, audiences, strict=True) if goal.slug in slugs]
            self._page("goal.html.j2", out, goal_path(goal.slug).rstrip("/"),
                       _digest(goal, [x for x, slugs in zip(listing, audiences, strict=True)
                                      if goal.slug in slugs]),
                       lambda goal=goal, mine=mine: {
                           "goal": goal, "posts": mine,
                           "title": f"{goal.label} · {self.config.name}"})
            self._feed(out / goal_path(goal.slug) / "feed.xml", goal, mine[:FEED_ENTRIES],
                       f"{self.config.name} · {goal.label}", goal_path(goal.slug))
        self._feed(out / "feed.xml", None, webs[:FEED_ENTRIES], self.config.name, "")
        css = self.env.loader.get_source(self.env, "style.css")[0]  # type: ignore[union-attr]
        self._write(out / "style.css", css.encode())
        self.cache.save(self._used_bodies)
        return out

    def _feed(self, target: Path, goal: Goal | None, entries: list[WebPost], title: str,
              page: str) -> None:
        fingerprint = _digest(self._global, "feed", goal, [_id(w.post) for w in entries])
        if self.cache.pages.get(str(target)) == fingerprint and target.is_file():
            return
        self._write(target, atom_feed(self.config, title, page + "feed.xml", page,
                                      [(w, self._feed_html(w, goal)) for w in entries]))
        self.cache.pages[str(target)] = fingerprint

    def _doses(self, exercise: Exercise) -> list[tuple[str, str]]:
        rows = [(g.label, exercise.dose[g.slug]) for g in self.goals if g.slug in exercise.dose]
        if "default" in exercise.dose:
            rows.append(("Everyone else", exercise.dose["default"]))
        return rows

    def _media(self, exercise: Exercise, out: Path, depth: int) -> str | None:
        ref = exercise.image
        if not ref or is_url(ref):
            return ref
        # Loading refused such paths already; checked again here, where the copy happens.
        if problem := media_problem("image", ref, self.config.content_dir):
            src = exercise.source
            raise RunletterError(Finding(src.display, src.line("image"), problem))
        rel = under_content(ref)
        source = self.config.content_dir / rel
        if source.is_file():
            self._write(out / "media" / rel, source.read_bytes())
        return "../" * depth + "media/" + rel

    def _feed_html(self, web: WebPost, goal: Goal | None) -> str:
        """Feed content with absolute links; a goal's feed shows that goal's edition."""
        html = web.html if goal is None else "\n".join(
            c.html for c in for_goal(web.chunks, goal.slug))
        # Page-relative links ('../../exercises/x/') become absolute for feed readers.
        return html.replace('href="../../', f'href="{self.config.base_url}/')
