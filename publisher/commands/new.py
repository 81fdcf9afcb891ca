"""`runletter new`: a post or an exercise, created with its front matter filled in."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from pathlib import Path

from publisher.config import Config
from publisher.errors import Finding, RunletterError, display_path


def slugify(text: str) -> str:
    """'Hip Drive: six moves!' -> 'hip-drive-six-moves'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if not slug:
        raise RunletterError(f"cannot make a file name from {text!r}; use letters or digits")
    return slug


def _yaml_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _create(path: Path, text: str, root: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise RunletterError(Finding(display_path(path, root), None, "already exists; "
                                     "pick another title or edit that file")) from None
    return path


def new_post(config: Config, title: str, today: dt.date | None = None) -> Path:
    """Scaffold content/posts/<date>-<slug>.md as a draft with every key present."""
    if "\n" in title or "\r" in title:
        raise RunletterError("a title must be on one line")
    today = today or dt.date.today()
    path = config.content_dir / "posts" / f"{today.isoformat()}-{slugify(title)}.md"
    topic = config.topics[0] if config.topics else "general"
    text = f"""---
title: {_yaml_text(title)}
date: {today.isoformat()}
topic: {topic}                 # one of: {", ".join(config.topics)}
# audience: [half, marathon]   # runner goals; leave out to send to every goal
exercises: []                  # exercise slugs shown as cards after the text
preheader: ""                  # the line inboxes show after the subject
summary: ""                    # one sentence for the archive and feeds
status: draft                  # draft | ready; drafts never send
---
Hi {{{{ first_name | default("runner") }}}},

Write here. Link an exercise inline with its slug in double square brackets,
like `[[clam-shell]]`, and list the ones to show as cards under `exercises`.

::: only marathon
A paragraph only the marathon edition shows.
:::
"""
    return _create(path, text, config.root)


def new_exercise(config: Config, name: str) -> Path:
    """Scaffold content/exercises/<slug>.md with every key present."""
    if "\n" in name or "\r" in name:
        raise RunletterError("a name must be on one line")
    path = config.content_dir / "exercises" / f"{slugify(name)}.md"
    text = f"""---
name: {_yaml_text(name)}
focus: []                # e.g. [motor-unit activation, hip stability]
muscles: []
equipment: []            # [] means bodyweight
level: beginner          # beginner | intermediate | advanced
dose:
  default: "3 x 10"      # for goals not listed below
  # marathon: "3 x 6 each side, heavy"
  # comeback: "2 x 10, bodyweight"
cues: []
progressions: []         # slugs of harder exercises
regressions: []          # slugs of easier exercises
# image: https://…       # or a path under content/
# video: https://…
---
How to do it, step by step.
"""
    return _create(path, text, config.root)

