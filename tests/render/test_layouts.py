"""Built-in layouts: stored once, shipped inside the package; an author's layouts/ overrides."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from publisher.project import open_project
from publisher.render.archive import SiteBuilder
from publisher.render.email import EmailRenderer
from publisher.render.layouts import layout_folders, overrides
from tests.helpers.support import assert_user_error, run
from tests.samples import FIXTURE_SLUG as SLUG
from tests.samples import REPO

BUILTINS = REPO / "publisher" / "layouts"


def repo_layouts() -> list[str]:
    """Every file of the built-in layouts as they are stored in the repo, e.g. 'email/…'."""
    return sorted(p.relative_to(BUILTINS).as_posix()
                  for kind in ("email", "web") for p in (BUILTINS / kind).rglob("*")
                  if p.is_file())


def marathon_html(root: Path) -> str:
    project = open_project(root)
    renderer = EmailRenderer(project.config)
    return renderer.editions(project.resolve(project.post(SLUG)))["marathon"].html()


def test_importlib_finds_every_built_in_layout_that_layouts_has():
    from importlib.resources import files

    shipped = files("publisher.layouts")
    for name in repo_layouts():
        assert shipped.joinpath(name).read_bytes() == (BUILTINS / name).read_bytes()


def test_a_wheel_ships_every_layout_once_inside_the_package(tmp_path):
    source = tmp_path / "src"  # a copy: building in place would write build/ into the repo
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for folder in ("publisher", "layouts"):
        shutil.copytree(REPO / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("runletter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n.removeprefix("publisher/layouts/") for n in names
                  if n.startswith("publisher/layouts/") and n.count("/") > 2) == repo_layouts()
    assert [n for n in names if not n.startswith("publisher/layouts/")
            and any(n.endswith("/" + layout) for layout in repo_layouts())] == []


def test_an_author_page_extends_a_built_in_page_block_by_block(project_dir):
    base = project_dir / "layouts/web/base.html.j2"
    base.parent.mkdir(parents=True)
    base.write_text('{% extends "!builtin/web/base.html.j2" %}\n'
                    '{% block head %}  <meta name="coach" content="Maya">\n{% endblock %}\n',
                    encoding="utf-8")
    project = open_project(project_dir)
    SiteBuilder(project.config, project.goals, project.catalogue).build(
        project.resolve_all())
    page = (project_dir / "site/posts" / SLUG / "index.html").read_text()
    assert '<meta name="coach" content="Maya">' in page
    assert '<nav>' in page and "<h2>The plan</h2>" in page  # the built-in page around it


def test_a_builtin_extension_overrides_one_block_and_keeps_the_rest_of_the_built_in(
        project_dir):
    base = project_dir / "layouts/email/base.mjml.j2"
    base.parent.mkdir(parents=True)
    base.write_text('{% extends "!builtin/email/base.mjml.j2" %}\n'
                    '{% block header %}\n    <mj-section><mj-column><mj-text>Coach Maya\'s '
                    '{{ goal.label }} notes</mj-text></mj-column></mj-section>\n'
                    '{% endblock %}\n', encoding="utf-8")
    html = marathon_html(project_dir)
    assert "Coach Maya's Marathon notes" in html
    assert "Marathon edition" not in html  # the built-in header is replaced
    assert "<h2>The plan</h2>" in html and "Change your goal or pause" in html


def test_the_built_in_email_renders_the_same_through_an_empty_extension(project_dir):
    before = marathon_html(project_dir)
    base = project_dir / "layouts/email/base.mjml.j2"
    base.parent.mkdir(parents=True)
    base.write_text('{% extends "!builtin/email/base.mjml.j2" %}\n', encoding="utf-8")
    assert marathon_html(project_dir) == before


def test_in_this_repo_layouts_holds_the_sample_s_own_overrides_not_the_built_ins():
    config = open_project(REPO).config
    assert overrides(config) == {"email/base.mjml.j2": REPO / "layouts/email/base.mjml.j2"}
    assert layout_folders(config, "email") == [REPO / "layouts/email", BUILTINS / "email"]
    base = (REPO / "layouts/email/base.mjml.j2").read_text(encoding="utf-8")
    assert '{% extends "!builtin/email/base.mjml.j2" %}' in base  # block by block, not a copy


def test_the_sample_s_email_is_the_built_in_one_with_its_colours_added(sample_root):
    project = open_project(sample_root)
    resolved = project.resolve(project.posts()[0])
    html = EmailRenderer(project.config).editions(resolved)["marathon"].html()
    assert ".body h2, .body h3 { color: #b45309; }" in html
    assert ".body h2 { font-size: 22px; }" in html  # the built-in style block, kept by super()
    assert "Marathon edition" in html and "Change your goal or pause" in html  # built-in blocks


def test_eject_works_in_the_sample_a_new_user_clones(sample_root):
    result = run("layouts", "eject", "email/partials/footer.mjml.j2")
    assert result.exit_code == 0, result.output
    ejected = sample_root / "layouts/email/partials/footer.mjml.j2"
    assert ejected.read_bytes() == (BUILTINS / "email/partials/footer.mjml.j2").read_bytes()
    listed = run("layouts", "list").stdout.splitlines()
    assert [line for line in listed if "overridden" in line] == [
        "email/base.mjml.j2  (overridden by layouts/email/base.mjml.j2)",
        "email/partials/footer.mjml.j2  (overridden by layouts/email/partials/footer.mjml.j2)"]
    assert_user_error(run("layouts", "eject", "email/base.mjml.j2"),
                      "layouts/email/base.mjml.j2: error: already exists; edit it, or pass "
                      "--force to replace it with the built-in\n1 error\n")


def test_layouts_list_marks_the_built_ins_the_newsletter_overrides(project_dir):
    footer = project_dir / "layouts/email/partials/footer.mjml.j2"
    footer.parent.mkdir(parents=True)
    footer.write_text("mine\n", encoding="utf-8")
    result = run("layouts", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == repo_layouts()
    marked = [line for line in lines if "overridden" in line]
    assert marked == ["email/partials/footer.mjml.j2  "
                      "(overridden by layouts/email/partials/footer.mjml.j2)"]


def test_eject_copies_exactly_the_built_in_bytes(project_dir):
    result = run("layouts", "eject", "email/partials/footer.mjml.j2")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("created layouts/email/partials/footer.mjml.j2 "
                             "(a copy of the built-in, to edit)\n")
    ejected = project_dir / "layouts/email/partials/footer.mjml.j2"
    assert ejected.read_bytes() == (BUILTINS / "email/partials/footer.mjml.j2").read_bytes()
    assert sorted(p.name for p in (project_dir / "layouts").rglob("*") if p.is_file()) == [
        "footer.mjml.j2"]


def test_eject_accepts_a_name_without_its_kind_when_only_one_kind_has_it(project_dir):
    assert run("layouts", "eject", "serve/embed.html.j2").exit_code == 0
    assert (project_dir / "layouts/web/serve/embed.html.j2").read_bytes() == (
        BUILTINS / "web/serve/embed.html.j2").read_bytes()


def test_eject_refuses_to_overwrite_an_override(project_dir):
    header = project_dir / "layouts/email/partials/header.mjml.j2"
    header.parent.mkdir(parents=True)
    header.write_text("my header\n", encoding="utf-8")
    assert_user_error(run("layouts", "eject", "email/partials/header.mjml.j2"),
                      "layouts/email/partials/header.mjml.j2: error: already exists; edit it, or "
                      "pass --force to replace it with the built-in\n1 error\n")
    assert header.read_text() == "my header\n"


def test_eject_with_force_replaces_an_override_with_the_built_in(project_dir):
    header = project_dir / "layouts/email/partials/header.mjml.j2"
    header.parent.mkdir(parents=True)
    header.write_text("my header\n", encoding="utf-8")
    assert run("layouts", "eject", "--force", "email/partials/header.mjml.j2").exit_code == 0
    assert header.read_bytes() == (BUILTINS / "email/partials/header.mjml.j2").read_bytes()


def test_eject_of_an_unknown_layout_suggests_one_and_how_to_list_them(project_dir):
    assert_user_error(run("layouts", "eject", "email/partials/card.mjml.j2"),
                      "runletter: error: unknown layout 'email/partials/card.mjml.j2' (did you "
                      "mean 'email/partials/exercise_card.mjml.j2'?); 'runletter layouts list' "
                      "shows them all\n1 error\n")
    assert not (project_dir / "layouts").exists()
