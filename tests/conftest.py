"""Shared fixtures: copies of the sample newsletter in tmp folders; tests never write the repo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECRET = "test-secret-0123456789abcdef"


def copy_sample(target: Path) -> Path:
    """Copy the repo's sample newsletter (config, content, goals, readers, layouts) to target."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "runletter.toml", target / "runletter.toml")
    for folder in ("content", "layouts"):
        shutil.copytree(REPO / folder, target / folder)
    (target / "subscribers").mkdir()
    for name in ("goals.toml", "sample.csv"):
        shutil.copy(REPO / "subscribers" / name, target / "subscribers" / name)
    return target


@pytest.fixture
def sample_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A writable copy of the sample newsletter, as the current folder, with a secret set."""
    root = copy_sample(tmp_path / "news")
    monkeypatch.chdir(root)
    monkeypatch.setenv("RUNLETTER_SECRET", SECRET)
    return root
