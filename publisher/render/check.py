"""Check every edition of a post before anyone receives it: pure functions over rendered data.

Findings are `path:line: level: message`. Errors stop a publish; warnings do too under
--strict. The link check against the network (`check_links_online`) is the one I/O step
and only runs when asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

from publisher.config import Config
from publisher.content.media import is_url, media_problem, under_content
from publisher.errors import Finding, RunletterError, suggest
from publisher.model import Catalogue, Edition, Goals, Post, Resolved
from publisher.render import mjml_lint
from publisher.render.email import EmailRenderer, Rendered
from publisher.render.layouts import layout_folders
from publisher.render.markdown import convert, new_markdown
from publisher.render.urls import exercise_path, goal_path, post_path

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail clips a message body larger than about 102 KB
SUBJECT_MAX = 78
SAMPLE_VALUES = {"first_name": "Alexandra", "unsubscribe_url": "https://example.org/u/" + "x" * 40,
                 "preferences_url": "https://example.org/p/" + "x" * 40}


@dataclass(frozen=True)
class Link:
    """A link or image found in a post's body."""

    url: str
    line: int
    image: bool = False
    alt: str | None = None


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, bool, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.found.append((values["href"] or "", False, None))
        elif tag == "img":
            self.found.append((values.get("src") or "", True, values.get("alt")))


_MD_URL = re.compile(r"\]\(\s*<?([^)\s>]+)")


def body_links(resolved: Resolved) -> list[Link]:
    """Links and images an author wrote in the body, with their source lines."""
    links: list[Link] = []
    md = new_markdown()
    for block in resolved.blocks:
        lines = block.markdown.split("\n")
        parser = _LinkParser()
        parser.feed(convert(md, block.markdown))
        for url, image, alt in parser.found:
            offset = next((i for i, line in enumerate(lines) if url in line), 0)
            links.append(Link(url=url, line=block.line + offset, image=image, alt=alt))
    return links


def archive_paths(posts: Iterable[Post], catalogue: Catalogue, goals: Goals) -> set[str]:
    """Every path the archive build writes (with and without the trailing slash)."""
    paths = {"", "index.html", "feed.xml", "style.css", "exercises/"}
    paths |= {post_path(p.slug) for p in posts if not p.is_draft}
    paths |= {exercise_path(slug) for slug in catalogue.exercises}
    for goal in goals:
        paths |= {goal_path(goal.slug), goal_path(goal.slug) + "feed.xml"}
    return paths | {p + "index.html" for p in paths if p.endswith("/")}


def check_links(post: Post, links: Iterable[Link], config: Config, pages: set[str],
                drafts: Mapping[str, Post]) -> list[Finding]:
    """Archive links that will not exist, malformed external links, images without alt."""
    where = post.source.display
    findings: list[Finding] = []
    for link in links:
        if link.image:
            problems = _image_problems(link, config)
        elif link.url == config.base_url or link.url.startswith(config.base_url + "/"):
            problems = _archive_link_problems(link.url, config.base_url, pages, drafts)
        else:
            problems = _external_link_problems(link.url)
        findings += [Finding(where, link.line, message, level) for message, level in problems]
    return findings


def _image_problems(link: Link, config: Config) -> list[tuple[str, str]]:
    """An image in the body: alt text, and a local file that is under content/ and exists."""
    url = link.url
    problems = []
    if not link.alt:
        problems.append((f"image '{url}' has no alt text; write ![what it shows](…)", "warning"))
    if problem := media_problem("image", url, config.content_dir):
        problems.append((problem, "error"))
    elif not is_url(url) and not (config.content_dir / under_content(url)).is_file():
        problems.append((f"image '{url}' not found under content/", "error"))
    return problems


def _archive_link_problems(url: str, base_url: str, pages: set[str],
                           drafts: Mapping[str, Post]) -> list[tuple[str, str]]:
    """A link into the archive must name a page the build writes (and not a draft)."""
    base = base_url + "/"
    path = urlsplit(url[len(base):] if url.startswith(base) else "").path
    if path.startswith("media/") or path in pages or path + "/" in pages:
        return []
    slug = path.strip("/").split("/")[-1]
    if path.startswith("posts/") and slug in drafts:
        return [(f"links to the draft post '{slug}', which is not in the archive", "error")]
    known = [p for p in pages if p.endswith("/")]
    return [(f"link to '{url}' will not exist in the archive" + suggest(path, known), "error")]


def _external_link_problems(url: str) -> list[tuple[str, str]]:
    """An outside link must be a well-formed http(s) or mailto URL (or a #fragment)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        if not parts.netloc or " " in url or "." not in parts.netloc.split(":")[0]:
            return [(f"malformed link '{url}'", "error")]
    elif parts.scheme == "mailto":
        if "@" not in parts.path:
            return [(f"malformed mailto link '{url}'", "error")]
    elif not url.startswith("#"):
        return [(f"link '{url}' is not a full URL; email links need https://…", "error")]
    return []


def check_exercise_media(resolved: Resolved, config: Config) -> list[Finding]:
    """A card's image or video given as a path under content/ must be there."""
    findings = []
    for exercise in resolved.exercises:
        for key in ("image", "video"):
            ref = getattr(exercise, key)
            if not ref or is_url(ref):
                continue
            if not (config.content_dir / under_content(ref)).is_file():
                findings.append(Finding(exercise.source.display, exercise.source.line(key),
                                        f"{key} '{ref}' not found under content/; give a path "
                                        "under content/ or a full https:// URL"))
    return findings


def check_post_fields(post: Post) -> list[Finding]:
    """Subject length and preheader."""
    findings: list[Finding] = []
    where = post.source.display
    if len(post.subject) > SUBJECT_MAX:
        key = "subject" if "subject" in post.source.key_lines else "title"
        findings.append(Finding(where, post.source.line(key), f"subject is {len(post.subject)} "
                                f"characters; inboxes cut it after about {SUBJECT_MAX}",
                                "warning"))
    if not post.preheader:
        findings.append(Finding(where, post.source.line("title"), "no preheader: inboxes will "
                                "show the first words of the email instead; add 'preheader:'",
                                "warning"))
    return findings


def check_goal_blocks(resolved: Resolved) -> list[Finding]:
    """A goal block naming a goal outside the audience is never seen by that goal."""
    findings: list[Finding] = []
    audience = {g.slug for g in resolved.audience}
    for block in resolved.blocks:
        for goal in block.goals or ():
            if goal not in audience:
                findings.append(Finding(resolved.post.source.display, block.opened,
                                        f"'::: only' names '{goal}', which is not in the post's "
                                        f"audience; no edition will show it", "warning"))
    return findings


def check_edition(post: Post, edition: Edition, config: Config) -> list[Finding]:
    """Size against Gmail's clipping, and the footer's unsubscribe link and postal address."""
    findings: list[Finding] = []
    where = post.source.display
    html = edition.html(SAMPLE_VALUES)
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        findings.append(Finding(where, None, f"the {edition.goal} edition is {size // 1024} KB; "
                                f"Gmail clips emails over 102 KB (shorten the post or split it)",
                                "warning"))
    if "unsubscribe_url" not in edition.slots:
        findings.append(Finding(where, None, f"the {edition.goal} edition has no unsubscribe "
                                "link: the email layout's footer must use {{ unsubscribe_url }}"))
    text = edition.text(SAMPLE_VALUES)
    for part, body in (("HTML", html), ("text", text)):
        if config.postal_address not in body.replace("&amp;", "&"):
            findings.append(Finding(where, None, f"the {edition.goal} edition's {part} part has "
                                    "no postal address: the footer must show "
                                    "{{ newsletter.postal_address }}"))
    return findings


def check_links_online(post: Post, links: Iterable[Link], timeout: float = 10.0,
                       workers: int = 8) -> list[Finding]:
    """Ask each external http(s) link once (bounded concurrency); 4xx/5xx become warnings."""
    import requests  # why: 0.1 s to import, and only `check --online` asks the network

    targets: dict[str, int] = {}
    for link in links:
        if is_url(link.url) and link.url not in targets:
            targets[link.url] = link.line

    def probe(url: str) -> tuple[str, str | None]:
        try:
            with requests.Session() as session:
                answer = session.head(url, timeout=timeout, allow_redirects=True)
                if answer.status_code in (405, 501):  # some servers refuse HEAD
                    answer = session.get(url, timeout=timeout, stream=True)
                if answer.status_code >= 400:
                    return url, f"answers {answer.status_code}"
        except requests.RequestException as exc:
            return url, f"cannot be reached ({type(exc).__name__})"
        return url, None

    findings = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for url, problem in pool.map(probe, targets):
            if problem:
                findings.append(Finding(post.source.display, targets[url],
                                        f"link '{url}' {problem}", "warning"))
    return findings


def check_resolved(resolved: Resolved, editions: Iterable[Edition], config: Config,
                   pages: set[str], drafts: Mapping[str, Post]) -> list[Finding]:
    """Every offline check of one post and its editions, errors first."""
    post = resolved.post
    links = body_links(resolved)
    findings = check_post_fields(post) + check_goal_blocks(resolved)
    findings += check_exercise_media(resolved, config)
    findings += check_links(post, links, config, pages, drafts)
    for edition in editions:
        findings += check_edition(post, edition, config)
    return sorted(findings, key=lambda f: (f.level != "error", f.line or 0))


class _Checks:
    """Findings gathered over several rendered posts, with what they are checked against."""

    def __init__(self, project, online: bool) -> None:
        every = project.posts()
        self.project = project
        self.online = online
        self.pages = archive_paths(every, project.catalogue, project.goals)
        self.drafts = {p.slug: p for p in every if p.is_draft}
        self.layouts = layout_folders(project.config, "email")
        self.findings: list[Finding] = []
        self.layout_findings: dict[Finding, None] = {}  # the layouts are shared: each once

    def add(self, rendered: Rendered) -> None:
        """Check one post's editions, and lint the MJML each was compiled from."""
        for rendition in rendered.renditions:
            self.layout_findings.update(dict.fromkeys(
                mjml_lint.findings(rendition.source, self.layouts, self.project.root)))
        resolved = rendered.resolved
        self.findings += check_resolved(resolved, rendered.editions.values(),
                                        self.project.config, self.pages, self.drafts)
        if self.online:
            self.findings += check_links_online(resolved.post, body_links(resolved))

    def result(self) -> list[Finding]:
        """Every finding, errors first."""
        return sorted([*self.findings, *self.layout_findings], key=lambda f: f.level != "error")


def check_rendered(project, rendered: Iterable[Rendered], online: bool = False) -> list[Finding]:
    """Check posts already rendered (as a publish does, to send what it checked)."""
    checks = _Checks(project, online)
    for one in rendered:
        checks.add(one)
    return checks.result()


def check_posts(project, posts: Iterable[Post], online: bool = False) -> list[Finding]:
    """Resolve, render and check each post; reference errors become findings too."""
    renderer = EmailRenderer(project.config)
    checks = _Checks(project, online)
    for post in posts:
        try:
            rendered = renderer.render(project.resolve(post))
        except RunletterError as exc:
            checks.findings.extend(exc.findings)
            continue
        checks.add(rendered)
    return checks.result()
