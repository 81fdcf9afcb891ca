"""An author's file that a symlink takes out of its folder is refused, as media is: posts,
exercises, sequence steps, sequence.toml, goals.toml and layouts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from publisher.render.layouts import builtin_layouts
from tests.helpers.support import run

# (file in the project, what the error calls it, the folder it must stay in)
KINDS = [
    ("content/posts/2026-01-01-everything.md", "post", "content"),
    ("content/exercises/glute-bridge.md", "exercise", "content"),
    ("content/sequences/comeback/02-phase-one.md", "step", "content"),
    ("content/sequences/comeback/sequence.toml", "sequence file", "content"),
    ("subscribers/goals.toml", "goals file", "the project"),
    ("layouts/email/partials/footer.mjml.j2", "layout", "layouts"),
]


def link_out(root: Path, relative: str, outside: Path) -> None:
    """Move a project file outside the project and leave a symlink to it in its place."""
    path = root / relative
    if not path.exists():  # a layout the fixture does not override: the built-in one
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(builtin_layouts() / relative.removeprefix("layouts/"), path)
    target = outside / path.name
    shutil.move(path, target)
    path.symlink_to(target)


@pytest.mark.parametrize(("relative", "kind", "folder"), KINDS)
def test_a_file_symlinked_from_outside_the_project_is_refused(timed_root, tmp_path, relative,
                                                              kind, folder):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link_out(timed_root, relative, outside)
    result = run("check")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    name = Path(relative).name
    assert (f"{relative}: error: {kind} '{name}' is outside {folder}/; copy the file in "
            "instead of linking to it") in result.stderr.splitlines()


def test_a_posts_folder_symlinked_from_outside_is_refused(timed_root, tmp_path):
    posts = timed_root / "content" / "posts"
    shutil.move(posts, tmp_path / "posts")
    posts.symlink_to(tmp_path / "posts")
    result = run("check")
    assert result.exit_code == 1, result.output
    assert ("content/posts/2026-01-01-everything.md: error: post '2026-01-01-everything.md' "
            "is outside content/; copy the file in instead of linking to it"
            ) in result.stderr.splitlines()


def test_a_post_symlinked_to_another_file_in_content_is_read(timed_root):
    posts = timed_root / "content" / "posts"
    (posts / "2026-01-03-again.md").symlink_to(posts / "2026-01-01-everything.md")
    result = run("check")
    assert "is outside content/" not in result.output
