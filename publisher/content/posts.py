"""Read the author's files (posts, exercises, goals) into plain data, checking their shape.

Shape is checked here (keys, types, values); references between files are checked in
`resolve`. Every problem is a Finding with the file and line, collected before raising so
the author sees all of them at once.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from publisher import clock
from publisher.content.documents import (
    CONTROL,
    HEADER_KEYS,
    SLUG_RE,
    Checker,
    Document,
    check_slug,
    control_findings,
    read_document,
)
from publisher.content.media import media_problem, outside_problem
from publisher.errors import Finding, RunletterError, display_path, suggest
from publisher.model import EVERYONE, Catalogue, Exercise, Goal, Goals, Post
from publisher.settings import toml_line

LEVELS = ("beginner", "intermediate", "advanced")
POST_STATUSES = ("draft", "ready")


def load_goals(path: Path, root: Path) -> Goals:
    """Read subscribers/goals.toml; the fallback goal 'general' is always present."""
    shown = display_path(path, root)
    if problem := outside_problem("goals file", path, root, "the project"):
        raise RunletterError(Finding(shown, None, problem))
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise RunletterError(Finding(shown, None, "goals file not found; create it with one "
                                     "[goals.<slug>] table per runner goal")) from None
    except tomllib.TOMLDecodeError as exc:
        raise RunletterError(Finding(shown, getattr(exc, "lineno", None),
                                     f"not valid TOML: {exc}")) from None
    findings = [Finding(shown, toml_line(text, key), f"unknown table '{key}'; goals go in "
                        "[goals.<slug>]") for key in data if key != "goals"]
    table = data.get("goals", {})
    if not isinstance(table, dict):
        findings.append(Finding(shown, None, "'goals' must be tables: [goals.<slug>]"))
        table = {}
    items: list[Goal] = []
    for slug, spec in table.items():
        goal, problems = _read_goal(slug, spec, shown,
                                    lambda key, slug=slug: toml_line(text, f"goals.{slug}", key))
        findings.extend(problems)
        if goal is not None:
            items.append(goal)
    if findings:
        raise RunletterError(findings)
    if not any(g.slug == EVERYONE for g in items):
        items.append(Goal(EVERYONE, "Everyone", "Readers who have not picked a goal."))
    return Goals(items=tuple(items), path=path)


def _read_goal(slug: str, spec: Any, shown: str,
               line_of: Callable[[str | None], int | None]) -> tuple[Goal | None, list[Finding]]:
    """One [goals.<slug>] table: the Goal, or None, and its problems on their lines."""
    if not SLUG_RE.match(slug):
        return None, [Finding(shown, line_of(None), f"goal '{slug}' is not a slug "
                              "(lowercase letters, digits and hyphens)")]
    if not isinstance(spec, dict):
        return None, [Finding(shown, line_of(None), f"[goals.{slug}] must be a table")]
    findings = [Finding(shown, line_of(key), f"[goals.{slug}] unknown key '{key}'"
                        + suggest(key, ("label", "description")))
                for key in spec if key not in ("label", "description")]
    label = spec.get("label")
    if not isinstance(label, str) or not label.strip():
        findings.append(Finding(shown, line_of("label") or line_of(None),
                                f"[goals.{slug}] needs a label, e.g. label = \"{slug.title()}\""))
        label = slug
    description = spec.get("description", "")
    if not isinstance(description, str):
        findings.append(Finding(shown, line_of("description"),
                                f"[goals.{slug}] description must be text"))
        description = ""
    return Goal(slug=slug, label=label.strip(), description=description.strip()), findings


def document_paths(folder: Path) -> list[Path]:
    """The Markdown documents in a folder, by name (a README or an `_`-prefixed file is not one)."""
    return [path for path in sorted(folder.glob("*.md"))
            if path.name.lower() != "readme.md" and not path.name.startswith("_")]


def _gather(folder: Path, root: Path, read: Callable[..., Any],
            cache: dict | None = None) -> list[Any]:
    """Read every document in a folder, gathering all errors before raising."""
    found: list[Any] = []
    findings: list[Finding] = []
    for path in document_paths(folder):
        if problem := contained(folder.name.removesuffix("s"), path, folder.parent, root):
            findings.append(problem)
            continue
        try:
            found.append(read(path, root, cache))
        except RunletterError as exc:
            findings.extend(exc.findings)
    if findings:
        raise RunletterError(findings)
    return found


def contained(kind: str, path: Path, content_dir: Path, root: Path) -> Finding | None:
    """A document that a symlink takes out of content/ (as media may not leave it either)."""
    problem = outside_problem(kind, path, content_dir, display_path(content_dir, root))
    return Finding(display_path(path, root), None, problem) if problem else None


EXERCISE_KEYS = ("name", "focus", "muscles", "equipment", "level", "dose", "cues",
                 "progressions", "regressions", "image", "video")


def read_exercise(path: Path, root: Path, cache: dict | None = None) -> Exercise:
    """Read one content/exercises/<slug>.md, checking its front matter's shape."""
    doc = read_document(path, root, cache)
    check = Checker(doc, EXERCISE_KEYS)
    check.findings.extend(check_slug(path, doc.source.display, "exercise"))
    check.findings.extend(control_findings(doc))
    dose_raw = doc.meta.get("dose", {})
    dose: dict[str, str] = {}
    if not isinstance(dose_raw, dict):
        check.error("dose", "'dose' must be a table of goal: text, e.g. "
                    'dose: {default: "3 x 8", marathon: "3 x 6 heavy"}')
    else:
        for goal, text in dose_raw.items():
            if not isinstance(text, str | int) or isinstance(text, bool):
                check.error(f"dose.{goal}", f"dose for '{goal}' must be text")
                continue
            dose[str(goal)] = str(text).strip()
    exercise = Exercise(
        slug=path.stem,
        name=check.text("name", required=True),
        focus=check.strings("focus"),
        muscles=check.strings("muscles"),
        equipment=check.strings("equipment"),
        level=check.choice("level", LEVELS, default="beginner"),
        dose=MappingProxyType(dose),
        cues=check.strings("cues"),
        progressions=check.slugs("progressions"),
        regressions=check.slugs("regressions"),
        image=check.text("image") or None,
        video=check.text("video") or None,
        body=doc.body,
        source=doc.source,
    )
    if check.findings:
        raise RunletterError(check.findings)
    return exercise


POST_KEYS = ("title", "date", "topic", "audience", "exercises", "subject", "preheader",
             "summary", "status", "send_at")


def read_post(path: Path, root: Path, cache: dict | None = None) -> Post:
    """Read one content/posts/<slug>.md, checking its front matter's shape."""
    doc = read_document(path, root, cache)
    check = Checker(doc, POST_KEYS)
    check.findings.extend(check_slug(path, doc.source.display, "post"))
    audience = check.slugs("audience") if "audience" in doc.meta else None
    if audience is not None and not audience:
        check.error("audience", "'audience' is empty; list goals, or remove the key "
                    "to send to everyone")
    post = post_from(doc, check, path.stem, date=_post_date(doc, check), audience=audience,
                     send_at=_send_at(doc, check))
    if check.findings:
        raise RunletterError(check.findings)
    return post


def post_from(doc: Document, check: Checker, slug: str, **fields: Any) -> Post:
    """The Post a document's common keys describe (title, topic, exercises, subject…), the
    shape of each checked into `check`; `fields` gives the rest (date, audience, send_at)."""
    # A line break in a header value gets the header's own message, not a second one.
    check.findings.extend(control_findings(doc, skip=HEADER_KEYS))
    title = check.text("title", required=True)
    post = Post(
        slug=slug,
        title=title,
        topic=check.text("topic", required=True),
        exercises=check.slugs("exercises"),
        subject=check.text("subject") or title,
        preheader=check.text("preheader"),
        summary=check.text("summary"),
        status=check.choice("status", POST_STATUSES, default="ready"),
        body=doc.body,
        source=doc.source,
        **fields,
    )
    for key, value in (("title", post.title), ("subject", post.subject)):
        if value.splitlines() not in ([], [value]):  # any line break, U+2028 and NEL too
            check.error(key, f"'{key}' must be on one line (it goes in the email's header)")
        elif key in doc.meta and (found := CONTROL.search(value)):
            check.error(key, f"'{key}' holds the control character U+{ord(found[0]):04X}, "
                        "which email and feeds cannot carry; delete it")
    return post


def _post_date(doc: Document, check: Checker) -> dt.date:
    raw_date = doc.meta.get("date")
    if raw_date is None:
        check.missing("date", "missing required key 'date' (YYYY-MM-DD)")
    elif isinstance(raw_date, dt.datetime):
        return raw_date.date()
    elif isinstance(raw_date, dt.date):
        return raw_date
    else:
        try:
            text = str(raw_date).strip()
            return (dt.date.fromisoformat(text) if len(text) <= 10
                    else dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date())
        except ValueError:
            check.error("date", f"date '{raw_date}' is not a date; write it as YYYY-MM-DD")
    return dt.date(1970, 1, 1)


def _send_at(doc: Document, check: Checker) -> dt.date | dt.datetime | None:
    """`send_at:` as a date (each reader's send_hour) or an aware instant; None when absent."""
    raw = doc.meta.get("send_at")
    if raw is None:
        return None
    if isinstance(raw, dt.date):  # YAML read it (a datetime is a date too)
        value: dt.date | dt.datetime = raw
    else:
        text = str(raw).strip()
        try:
            value = (dt.date.fromisoformat(text) if len(text) == 10 else
                     dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            check.error("send_at", f"send_at '{raw}' is not a date or time; write "
                        "2027-01-10 (each reader at send_hour in their zone) or "
                        "2027-01-10T06:30:00+01:00 (one instant for everyone)")
            return None
    # Before converting: an instant near year 1 or 9999 has no UTC time to convert to.
    if not _in_range(value, raw, check):
        return None
    if not isinstance(value, dt.datetime):
        return value
    if value.tzinfo is None:
        check.error("send_at", f"send_at '{raw}' has no UTC offset, so it names no instant; "
                    "add one (e.g. +01:00 or Z), or give a date alone to send at each "
                    "reader's send_hour")
        return None
    return value.astimezone(dt.UTC)


def _in_range(value: dt.date, raw: object, check: Checker) -> bool:
    """Whether `send_at` is within clock.DATE_RANGE; when not, an error on its line."""
    try:
        clock.check_in_range(value, f"send_at '{raw}'")
    except clock.OutOfRange as exc:
        check.error("send_at", str(exc))
        return False
    return True


def media_findings(exercise: Exercise, content_dir: Path) -> list[Finding]:
    """An image or video path that leaves content/ (or names another scheme), on its line."""
    src = exercise.source
    return [Finding(src.display, src.line(key), problem)
            for key in ("image", "video")
            if (ref := getattr(exercise, key))
            and (problem := media_problem(key, ref, content_dir))]


def load_catalogue(content_dir: Path, root: Path, cache: dict | None = None) -> Catalogue:
    """Read every exercise under content/exercises/."""
    exercises = _gather(content_dir / "exercises", root, read_exercise, cache)
    # Checked on every load, cached or not: a symlink can change without the file changing.
    findings = [f for e in exercises for f in media_findings(e, content_dir)]
    if findings:
        raise RunletterError(findings)
    return Catalogue(exercises=MappingProxyType({e.slug: e for e in exercises}))


def load_posts(content_dir: Path, root: Path, cache: dict | None = None) -> tuple[Post, ...]:
    """Read every post under content/posts/, newest first."""
    posts = _gather(content_dir / "posts", root, read_post, cache)
    return tuple(sorted(posts, key=lambda p: (p.date, p.slug), reverse=True))


def find_post(content_dir: Path, root: Path, name: str) -> Path:
    """Find a post by slug or by path; the error lists close slugs."""
    candidate = Path(name)
    if candidate.suffix == ".md" and candidate.exists():
        return candidate.resolve()
    if (root / candidate).suffix == ".md" and (root / candidate).exists():
        return (root / candidate).resolve()
    folder = content_dir / "posts"
    path = folder / f"{candidate.stem}.md"
    if path.exists():
        return path
    slugs = sorted(p.stem for p in folder.glob("*.md"))
    # A slug without its date prefix is enough when it names one post.
    undated = [s for s in slugs if _undated(s) == candidate.stem]
    if len(undated) == 1:
        return folder / f"{undated[0]}.md"
    raise RunletterError(f"no post '{name}' in {display_path(folder, root)}"
                         + suggest(candidate.stem, [*slugs, *_unique_undated(slugs)])
                         + "; give a slug (file name without .md) or a path")


def _undated(slug: str) -> str:
    return re.sub(r"^\d{4}-\d{2}-\d{2}-", "", slug)


def _unique_undated(slugs: list[str]) -> list[str]:
    """Slugs without their date, where that still names one post (what an author types)."""
    short = [_undated(s) for s in slugs]
    return [s for s in short if short.count(s) == 1 and s not in slugs]
