"""`runletter layouts`: the built-in layouts, and copying one into layouts/ to edit."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..errors import display_path
from ..layout_files import builtin_names, eject, overrides


@dataclass(frozen=True)
class Layout:
    """A built-in layout, and the author's file that replaces it, if any."""

    name: str
    override: str | None


def list_layouts(config: Config) -> tuple[Layout, ...]:
    """Every built-in layout, with this newsletter's override where it has one."""
    replaced = overrides(config)
    return tuple(Layout(name, display_path(replaced[name], config.root)
                        if name in replaced else None) for name in builtin_names())


def eject_layout(config: Config, name: str, force: bool = False) -> str:
    """Copy the built-in layout NAME into layouts/; the copy's path as the author sees it."""
    return display_path(eject(config, name, force), config.root)
