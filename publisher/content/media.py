"""Media references: a full http(s) URL, or a file the author put under content/.

Only files under content/ may reach site/: a path that climbs out of it ('..', an absolute
path, a symlink pointing elsewhere) is refused wherever it is named.
"""

from __future__ import annotations

import os
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
    root = os.path.realpath(content_dir)
    # Backslashes are judged both ways: as separators ('..\\x' climbs out on Windows, and
    # browsers read it as '../x') and as the plain characters this system opens.
    for path in {ref, ref.replace("\\", "/")}:
        if path.startswith("/"):
            return True
        # Resolved as the system opens it, symlinks first and '..' after: 'img/..' climbs
        # from wherever img points. (Normalising the text first would miss that.)
        target = os.path.realpath(os.path.join(root, path.removeprefix("content/")))
        if os.path.commonpath([root, target]) != root:
            return True
    return False


def media_problem(key: str, ref: str, content_dir: Path) -> str | None:
    """Why a media reference may not be used, or None when it is a URL or stays in content/."""
    if is_url(ref):
        return None
    if _SCHEME.match(ref):
        return f"{key} '{ref}' is not an http(s) URL or a path under content/"
    if _outside(ref, content_dir):
        return f"{key} '{ref}' is outside content/"
    return None


def leaves(path: Path, top: Path) -> bool:
    """True when a file, followed through every symlink on its way, is not under `top`."""
    root = os.path.realpath(top)
    return os.path.commonpath([root, os.path.realpath(path)]) != root


def outside_problem(kind: str, path: Path, top: Path, shown_top: str) -> str | None:
    """Why an author's file may not be read: it is a symlink (or in a linked folder) that
    leads out of its folder; None when it stays in."""
    if not leaves(path, top):
        return None
    return (f"{kind} '{path.name}' is outside {shown_top}/; copy the file in instead of "
            "linking to it")
