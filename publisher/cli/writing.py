"""The writing verbs: `build`, `render`, `check`, `new`, `init` and `layouts` (the click
wiring and printing; the services are in `publisher.commands`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from publisher.cli import project_here
from publisher.cli.console import plural, report, tally
from publisher.commands.build import build as build_site
from publisher.commands.check import check as check_posts
from publisher.commands.init import NEXT_STEPS, init_project
from publisher.commands.layouts import eject_layout, list_layouts
from publisher.commands.new import new_exercise, new_post
from publisher.commands.render import edition_body
from publisher.commands.render import render as render_edition
from publisher.errors import display_path
from publisher.project import open_project


@click.command("build")
@click.option("--drafts", is_flag=True, help="Include draft posts in the archive.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Write somewhere other than the configured site/ folder.")
def build(drafts: bool, out: Path | None) -> None:
    """Build the web archive (posts, exercises, goals, feeds) into site/."""
    built = build_site(open_project(Path.cwd(), cache=True), drafts, out)
    click.echo(f"built {built.site}/: {plural(built.posts, 'post')}, "
               f"{plural(built.exercises, 'exercise')}, {plural(built.goals, 'goal')} "
               f"({plural(built.written, 'file')} written)")


@click.command("render")
@click.argument("post")
@click.option("--goal", "goal_slug", help="Which goal's edition (default: general, "
              "or the post's first goal).")
@click.option("--text", is_flag=True, help="Print the plain-text part instead of the HTML.")
def render(post: str, goal_slug: str | None, text: bool) -> None:
    """Print one edition of POST (a slug or a path) to stdout."""
    sys.stdout.write(edition_body(render_edition(project_here(), post, goal_slug), text))


@click.command("check")
@click.argument("posts", nargs=-1)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.option("--links", is_flag=True, help="Also ask every external link (needs network).")
def check(posts: tuple[str, ...], strict: bool, links: bool) -> None:
    """Check every edition of POSTS (default: all posts) before sending."""
    checked = check_posts(project_here(), posts, links)
    report(checked.findings)
    steps = f" and {plural(checked.steps, 'sequence step')}" if checked.steps else ""
    click.echo(f"checked {plural(checked.posts, 'post')}{steps}: {tally(checked.findings)}",
               err=True)
    if checked.errors or (strict and checked.warnings):
        sys.exit(1)


@click.group("new")
def new() -> None:
    """Scaffold a post or an exercise with its front matter filled in."""


@new.command("post")
@click.argument("title")
def new_post_command(title: str) -> None:
    """Create content/posts/<date>-<slug>.md as a draft."""
    project = project_here()
    click.echo(f"created {display_path(new_post(project.config, title), project.root)}")


@new.command("exercise")
@click.argument("name")
def new_exercise_command(name: str) -> None:
    """Create content/exercises/<slug>.md."""
    project = project_here()
    click.echo(f"created {display_path(new_exercise(project.config, name), project.root)}")


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Start a new newsletter in DIRECTORY with a minimal example."""
    init_project(directory)
    click.echo(f"created a newsletter in {directory}/ — next:")
    width = max(len(step) for step, _ in NEXT_STEPS)
    for line in (f"cd {directory}", *(f"{s:<{width}}  # {why}" for s, why in NEXT_STEPS)):
        click.echo(f"  {line}")


@click.group("layouts")
def layouts() -> None:
    """List the built-in layouts, or copy one into layouts/ to edit.

    A file in layouts/ replaces the built-in one of the same name; a layout that starts with
    {% extends "!builtin/email/base.mjml.j2" %} overrides only the blocks it names.
    """


@layouts.command("list")
def layouts_list() -> None:
    """Every built-in layout; the ones this newsletter overrides are marked."""
    for layout in list_layouts(Path.cwd()):
        click.echo(layout.name + (f"  (overridden by {layout.override})" if layout.override
                                  else ""))


@layouts.command("eject")
@click.argument("name")
@click.option("--force", is_flag=True, help="Replace an existing override with the built-in.")
def layouts_eject(name: str, force: bool) -> None:
    """Copy the built-in layout NAME (e.g. email/partials/footer.mjml.j2) into layouts/."""
    path = eject_layout(Path.cwd(), name, force)
    click.echo(f"created {path} (a copy of the built-in, to edit)")
