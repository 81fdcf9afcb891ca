"""`runletter layouts`: the built-in layouts, and copying one into layouts/ to edit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from publisher.config import Config, find_root, load_config
from publisher.errors import display_path
from publisher.render.layouts import builtin_names, eject, overrides


@dataclass(frozen=True)
class Layout:
    """A built-in layout, and the author's file that replaces it, if any."""

    name: str
    override: str | None


def config_at(start: Path) -> Config:
    """The settings of the newsletter at or above `start` (no content loaded)."""
    return load_config(find_root(start))


def list_layouts(start: Path) -> tuple[Layout, ...]:
    """Every built-in layout, with the override where the newsletter at `start` has one."""
    config = config_at(start)
    replaced = overrides(config)
    return tuple(Layout(name, display_path(replaced[name], config.root)
                        if name in replaced else None) for name in builtin_names())


def eject_layout(start: Path, name: str, force: bool = False) -> str:
    """Copy the built-in layout NAME into the layouts/ of the newsletter at `start`; the
    copy's path as the author sees it."""
    config = config_at(start)
    return display_path(eject(config, name, force), config.root)
