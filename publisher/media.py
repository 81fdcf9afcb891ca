"""Media references: a full http(s) URL, or a file the author put under content/.

Only files under content/ may reach site/: a path that climbs out of it ('..', an absolute
path, a symlink pointing elsewhere) is refused wherever it is named.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

URL = re.compile(r"^https?://")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def is_url(ref: str) -> bool:
    """True for an http(s) URL, which is linked as given and never copied."""
    return bool(URL.match(ref))


def under_content(ref: str) -> str:
    """The path below content/ that a local reference names ('content/' in front is optional)."""
    return ref.lstrip("/").removeprefix("content/")


def _outside(ref: str, content_dir: Path) -> bool:
    # Backslashes count as separators: '..\\x' climbs out on Windows, and browsers treat
    # it as '../x' in a URL.
    path = ref.replace("\\", "/")
    if path.startswith("/"):
        return True
    rel = posixpath.normpath(path.removeprefix("content/"))
    if rel == ".." or rel.startswith("../"):
        return True
    # A symlink under content/ (the file or a folder on its way) may point anywhere.
    root = content_dir.resolve()
    return not (root / rel).resolve().is_relative_to(root)


def media_problem(key: str, ref: str, content_dir: Path) -> str | None:
    """Why a media reference may not be used, or None when it is a URL or stays in content/."""
    if is_url(ref):
        return None
    if _SCHEME.match(ref):
        return f"{key} '{ref}' is not an http(s) URL or a path under content/"
    if _outside(ref, content_dir):
        return f"{key} '{ref}' is outside content/"
    return None
