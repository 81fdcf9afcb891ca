"""Where layouts come from: the author's `layouts/` (overrides only), then the built-in ones.

The built-ins are the package `publisher.layouts`, as MkDocs' and Pelican's themes are. An
author's file replaces the built-in file of the same name, and
`{% extends "!builtin/email/base.mjml.j2" %}` reaches the built-in one beneath it to override
it block by block (as Pelican's `!simple/` does).
"""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path

import jinja2

from publisher.config import Config
from publisher.content.media import outside_problem
from publisher.errors import Finding, RunletterError, display_path, suggest

KINDS = ("email", "web")
BUILTIN = "!builtin"


@functools.cache
def builtin_layouts() -> Path:
    """The folder of built-in layouts inside the installed package (editable or wheel)."""
    return Path(str(files("publisher.layouts")))


def layout_folders(config: Config, kind: str) -> list[Path]:
    """Where `<kind>/` layouts are looked up, the author's folder first."""
    return [config.layouts_dir / kind, builtin_layouts() / kind]


class AuthorLoader(jinja2.FileSystemLoader):
    """The author's layouts of one kind: a symlink out of layouts/ is refused, as a post's
    out of content/ is."""

    def __init__(self, folder: Path, config: Config):
        super().__init__(str(folder))
        self.config = config

    def get_source(self, environment: jinja2.Environment, template: str):
        source, filename, uptodate = super().get_source(environment, template)
        layouts = self.config.layouts_dir
        if problem := outside_problem("layout", Path(filename), layouts,
                                      display_path(layouts, self.config.root)):
            raise RunletterError(Finding(display_path(filename, self.config.root), None,
                                         problem))
        return source, filename, uptodate


def layout_loader(config: Config, kind: str) -> jinja2.BaseLoader:
    """The author's `<kind>/` files, then the built-in ones; `!builtin/<kind>/…` only these."""
    author, builtin = layout_folders(config, kind)
    builtin_loader = jinja2.FileSystemLoader(str(builtin))
    return jinja2.ChoiceLoader([
        AuthorLoader(author, config),
        builtin_loader,
        jinja2.PrefixLoader({BUILTIN: jinja2.PrefixLoader({kind: builtin_loader})}),
    ])


def layout_environment(config: Config, kind: str) -> jinja2.Environment:
    """Jinja2 for `layouts/<kind>/`: the author's files first, the built-in ones behind."""
    return jinja2.Environment(
        loader=layout_loader(config, kind),
        autoescape=jinja2.select_autoescape(["html.j2", "mjml.j2", "xml.j2"],
                                            default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # One environment serves one run: no stat() of every template on every render.
        auto_reload=False,
    )


def builtin_names() -> list[str]:
    """Every built-in layout as `<kind>/<path>`, e.g. `email/partials/footer.mjml.j2`."""
    root = builtin_layouts()
    return sorted(path.relative_to(root).as_posix()
                  for kind in KINDS for path in (root / kind).rglob("*") if path.is_file())


def overrides(config: Config) -> dict[str, Path]:
    """The built-in layouts the newsletter replaces, each with the file replacing it."""
    author = config.layouts_dir
    return {name: author / name for name in builtin_names() if (author / name).is_file()}


def find_builtin(name: str) -> str:
    """The built-in layout NAME means: `<kind>/<path>`, or a `<path>` only one kind has."""
    names = builtin_names()
    wanted = name.removeprefix("layouts/")
    matches = [n for n in names if wanted in (n, n.partition("/")[2])]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RunletterError(f"'{name}' is a layout of more than one kind: "
                             f"{', '.join(matches)}; name one of them")
    raise RunletterError(f"unknown layout '{name}'" + _closest(wanted, names)
                         + "; 'runletter layouts list' shows them all")


def _closest(wanted: str, names: list[str]) -> str:
    # A half-remembered file name ("card") is closer to the one containing it
    # ("exercise_card") than to one spelt alike ("header"), which is all difflib sees.
    stem = wanted.rpartition("/")[2].partition(".")[0]
    containing = [n for n in names if stem and stem in n.rpartition("/")[2]]
    if len(containing) == 1:
        return f" (did you mean '{containing[0]}'?)"
    candidates = names if wanted.partition("/")[0] in KINDS else [
        n.partition("/")[2] for n in names]
    return suggest(wanted, candidates)


def eject(config: Config, name: str, force: bool = False) -> Path:
    """Copy one built-in layout into the author's `layouts/` to edit; return the copy."""
    found = find_builtin(name)
    target = config.layouts_dir / found
    if target.exists() and not force:
        raise RunletterError(Finding(display_path(target, config.root), None,
                                     "already exists; edit it, or pass --force to replace "
                                     "it with the built-in"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((builtin_layouts() / found).read_bytes())
    return target
