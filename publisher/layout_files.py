"""Where layouts come from: the author's `layouts/` (overrides only), then the built-in ones.

The built-ins are this repo's top-level `layouts/`, installed inside the package as
`publisher.layouts` (see setup.py). An author's file replaces the built-in file of the same
name, and `{% extends "!builtin/email/base.mjml.j2" %}` reaches the built-in one beneath it
to override it block by block (as Pelican's `!simple/` does).
"""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path

import jinja2

from .config import Config

BUILTIN = "!builtin"


@functools.cache
def builtin_layouts() -> Path:
    """The folder of built-in layouts inside the installed package (editable or wheel)."""
    return Path(str(files("publisher.layouts")))


def author_layouts(config: Config) -> Path | None:
    """The newsletter's layouts folder, or None when it is the built-in folder (this repo)."""
    try:
        if config.layouts_dir.samefile(builtin_layouts()):
            return None
    except OSError:  # no layouts/ folder: nothing is overridden
        pass
    return config.layouts_dir


def layout_folders(config: Config, kind: str) -> list[Path]:
    """Where `<kind>/` layouts are looked up, the author's folder first."""
    author = author_layouts(config)
    return [*([author / kind] if author else []), builtin_layouts() / kind]


class BuiltinLoader(jinja2.FileSystemLoader):
    """The built-in layouts of one kind."""

    def get_source(self, environment: jinja2.Environment, template: str):
        source, filename, uptodate = super().get_source(environment, template)
        # In this repo layouts/ is the author's folder and the built-ins at once: a
        # `!builtin/` there would extend itself until Python's recursion limit.
        if f"{BUILTIN}/" in source:
            line = source[:source.index(BUILTIN)].count("\n") + 1
            raise jinja2.TemplateSyntaxError(
                f"a built-in layout cannot extend '{BUILTIN}/…' (it would extend itself)",
                line, template, filename)
        return source, filename, uptodate


def layout_loader(config: Config, kind: str) -> jinja2.BaseLoader:
    """The author's `<kind>/` files, then the built-in ones; `!builtin/<kind>/…` only these."""
    *author, builtin = layout_folders(config, kind)
    builtin_loader = BuiltinLoader(str(builtin))
    return jinja2.ChoiceLoader([
        *(jinja2.FileSystemLoader(str(folder)) for folder in author),
        builtin_loader,
        jinja2.PrefixLoader({BUILTIN: jinja2.PrefixLoader({kind: builtin_loader})}),
    ])

