"""A pickle under .runletter-cache/ (git-ignored) that lets a rebuild skip unchanged work.

Only ever a shortcut: a missing, stale or broken cache file means the work is redone.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from publisher import __version__

CACHE_DIR = ".runletter-cache"


def cache_path(root: Path, name: str) -> Path:
    """Where a named cache lives in a project."""
    return root / CACHE_DIR / f"{name}.pickle"


def load_cache(path: Path | None) -> Any:
    """The cached value, or None when there is none usable (other version, broken file)."""
    if path is None or not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            version, value = pickle.load(handle)  # noqa: S301 - our own file, never downloaded
    except Exception:  # a broken cache only costs the work it would have saved
        return None
    return value if version == __version__ else None


def beside(path: Path) -> Path:
    """A temporary name next to `path` that no other process writing it at once shares
    (two publishes of one post rebuild the archive together)."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def save_cache(path: Path | None, value: Any) -> None:
    """Write a cache atomically."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = beside(path)
    with open(tmp, "wb") as handle:
        pickle.dump((__version__, value), handle, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
