"""`runletter init`: a new newsletter, copied from the skeleton shipped in the package."""

from __future__ import annotations

import shutil
from pathlib import Path

from publisher.errors import Finding, RunletterError

SKELETON = Path(__file__).resolve().parents[1] / "skeleton"

# What a new author does next, in order; the CLI prints these after creating the folder.
NEXT_STEPS = (
    ("runletter build", "the web archive in site/"),
    ("runletter subscribers import subscribers/sample.csv", "your readers, from a CSV"),
    ("runletter publish welcome --dry-run", "who would get which edition"),
)


def init_project(target: Path) -> Path:
    """Copy the starter newsletter into an empty (or new) folder."""
    if target.exists() and any(target.iterdir()):
        raise RunletterError(Finding(str(target), None,
                                     "folder is not empty; pick a new folder name"))
    shutil.copytree(SKELETON, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (target / "gitignore").rename(target / ".gitignore")
    return target
