"""MJML warnings: unknown elements, misplaced elements and unknown attributes.

mjml-python (MRML) renders whatever it is given and reports only what it cannot parse, so
a misspelt `<mj-buton>` or `colour="red"` silently vanishes from the email. This does what
node mjml's validator does at `validationLevel: soft`: the allowed children and attributes
below follow MJML's component documentation (v4/v5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from publisher.errors import Finding, suggest

_PADDING = ("padding", "padding-top", "padding-bottom", "padding-left", "padding-right")
_BORDERS = ("border", "border-top", "border-bottom", "border-left", "border-right")
_FONT = ("font-family", "font-size", "font-style", "font-weight", "letter-spacing",
         "line-height", "color", "text-decoration", "text-transform")
_SECTION = (*_PADDING, *_BORDERS, "background-color", "background-url", "background-repeat",
            "background-size", "background-position", "background-position-x",
            "background-position-y", "border-radius", "direction", "full-width", "gutter",
            "text-align", "text-padding")

ATTRIBUTES: dict[str, frozenset[str]] = {name: frozenset(attrs) for name, attrs in {
    "mjml": ("lang", "dir", "owa"),
    "mj-head": (),
    "mj-body": ("width", "background-color", "id"),
    "mj-title": (),
    "mj-preview": (),
    "mj-style": ("inline",),
    "mj-font": ("name", "href"),
    "mj-breakpoint": ("width",),
    "mj-attributes": (),
    "mj-html-attributes": (),
    "mj-selector": ("path",),
    "mj-html-attribute": ("name",),
    "mj-raw": ("position",),
    "mj-section": _SECTION,
    "mj-wrapper": (*_SECTION, "gap"),
    "mj-group": ("background-color", "direction", "vertical-align", "width"),
    "mj-column": (*_PADDING, *_BORDERS, "background-color", "border-radius", "direction",
                  "inner-background-color", "inner-border", "inner-border-top",
                  "inner-border-bottom", "inner-border-left", "inner-border-right",
                  "inner-border-radius", "vertical-align", "width"),
    "mj-hero": (*_PADDING, "mode", "height", "background-url", "background-width",
                "background-height", "background-position", "border-radius",
                "inner-background-color", "inner-padding", "inner-padding-top",
                "inner-padding-left", "inner-padding-right", "inner-padding-bottom",
                "background-color", "vertical-align"),
    "mj-text": (*_PADDING, *_FONT, "align", "background-color", "container-background-color",
                "height", "vertical-align"),
    "mj-button": (*_PADDING, *_BORDERS, *_FONT, "align", "background-color", "border-radius",
                  "container-background-color", "height", "href", "name", "title",
                  "inner-padding", "rel", "target", "vertical-align", "text-align", "width"),
    "mj-image": (*_PADDING, *_BORDERS, "alt", "href", "name", "src", "srcset", "sizes",
                 "title", "rel", "align", "border-radius", "container-background-color",
                 "fluid-on-mobile", "target", "width", "height", "max-height", "font-size",
                 "usemap"),
    "mj-divider": (*_PADDING, "border-color", "border-style", "border-width",
                   "container-background-color", "width", "align"),
    "mj-spacer": (*_PADDING, *_BORDERS, "container-background-color", "height"),
    "mj-table": (*_PADDING, "align", "border", "cellpadding", "cellspacing",
                 "container-background-color", "color", "font-family", "font-size",
                 "font-weight", "line-height", "role", "table-layout", "vertical-align",
                 "width"),
    "mj-social": (*_PADDING, *_FONT, "align", "border", "border-radius",
                  "container-background-color", "icon-size", "icon-height", "icon-padding",
                  "inner-padding", "mode", "table-layout", "text-padding", "vertical-align"),
    "mj-social-element": (*_PADDING, *_FONT, "align", "icon-position", "background-color",
                          "border", "border-radius", "href", "icon-size", "icon-height",
                          "icon-padding", "name", "text-padding", "rel", "src", "srcset",
                          "sizes", "alt", "title", "target", "vertical-align"),
    "mj-navbar": (*_PADDING, "align", "base-url", "hamburger", "ico-align", "ico-open",
                  "ico-close", "ico-color", "ico-font-size", "ico-font-family",
                  "ico-text-transform", "ico-padding", "ico-padding-left", "ico-padding-top",
                  "ico-padding-right", "ico-padding-bottom", "ico-text-decoration",
                  "ico-line-height"),
    "mj-navbar-link": (*_PADDING, *_FONT, "href", "name", "target", "rel"),
    "mj-accordion": (*_PADDING, "container-background-color", "border", "font-family",
                     "icon-align", "icon-width", "icon-height", "icon-wrapped-url",
                     "icon-wrapped-alt", "icon-unwrapped-url", "icon-unwrapped-alt",
                     "icon-position"),
    "mj-accordion-element": ("background-color", "border", "font-family", "icon-align",
                             "icon-width", "icon-height", "icon-wrapped-url",
                             "icon-wrapped-alt", "icon-unwrapped-url", "icon-unwrapped-alt",
                             "icon-position"),
    "mj-accordion-title": (*_PADDING, "background-color", "color", "font-size",
                           "font-family", "font-weight"),
    "mj-accordion-text": (*_PADDING, "background-color", "font-size", "font-family",
                          "font-weight", "letter-spacing", "line-height", "color"),
    "mj-carousel": ("align", "border-radius", "container-background-color", "icon-width",
                    "left-icon", *_PADDING, "right-icon", "thumbnails", "tb-border",
                    "tb-border-radius", "tb-hover-border-color", "tb-selected-border-color",
                    "tb-width"),
    "mj-carousel-image": ("alt", "href", "rel", "target", "title", "src", "thumbnails-src",
                          "border-radius", "tb-border", "tb-border-radius"),
}.items()}
EVERYWHERE = frozenset({"mj-class", "css-class"})

_IN_COLUMN = ("mj-accordion", "mj-button", "mj-carousel", "mj-divider", "mj-image", "mj-raw",
              "mj-social", "mj-spacer", "mj-table", "mj-text", "mj-navbar")
CHILDREN: dict[str, tuple[str, ...]] = {
    "mjml": ("mj-body", "mj-head", "mj-raw"),
    "mj-head": ("mj-attributes", "mj-breakpoint", "mj-html-attributes", "mj-font",
                "mj-preview", "mj-style", "mj-title", "mj-raw"),
    "mj-body": ("mj-raw", "mj-section", "mj-wrapper", "mj-hero"),
    "mj-wrapper": ("mj-hero", "mj-raw", "mj-section"),
    "mj-section": ("mj-column", "mj-group", "mj-raw"),
    "mj-group": ("mj-column", "mj-raw"),
    "mj-column": _IN_COLUMN,
    "mj-hero": _IN_COLUMN,
    "mj-accordion": ("mj-accordion-element", "mj-raw"),
    "mj-accordion-element": ("mj-accordion-title", "mj-accordion-text", "mj-raw"),
    "mj-carousel": ("mj-carousel-image",),
    "mj-navbar": ("mj-navbar-link", "mj-raw"),
    "mj-social": ("mj-social-element", "mj-raw"),
    "mj-html-attributes": ("mj-selector",),
    "mj-selector": ("mj-html-attribute",),
}
# Their content is HTML or text, passed through as written.
ENDING = frozenset({"mj-text", "mj-button", "mj-table", "mj-raw", "mj-navbar-link",
                    "mj-accordion-title", "mj-accordion-text", "mj-social-element",
                    "mj-style", "mj-title", "mj-preview", "mj-carousel-image",
                    "mj-html-attribute"})


@dataclass(frozen=True)
class Problem:
    """One MJML warning at a line of the rendered MJML source."""

    line: int
    tag: str
    message: str
    needle: str  # text to look for in the layout files, to point at the right one


class _Linter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[Problem] = []
        self.raw_until: str | None = None  # inside an ending tag: HTML, not MJML
        self.in_attributes = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.raw_until or not (tag == "mjml" or tag.startswith("mj-")):
            return
        line = self.getpos()[0]
        if self.in_attributes:  # <mj-all>, <mj-class>, or any element's defaults
            self.stack.append(tag)
            return
        if tag not in ATTRIBUTES:
            self.problems.append(Problem(line, tag, f"unknown MJML element <{tag}>"
                                         + suggest(tag, ATTRIBUTES), f"<{tag}"))
        else:
            parent = self.stack[-1] if self.stack else None
            allowed = CHILDREN.get(parent or "", ())
            if parent is not None and tag not in allowed and parent not in ENDING:
                where = {"mj-text": "an <mj-column>", "mj-column": "an <mj-section>"}
                hint = where.get(tag, "one of: " + ", ".join(
                    sorted(p for p, kids in CHILDREN.items() if tag in kids)))
                self.problems.append(Problem(line, tag, f"<{tag}> cannot be inside "
                                             f"<{parent}>; put it in {hint}", f"<{tag}"))
            for name, _ in attrs:
                if name not in ATTRIBUTES[tag] and name not in EVERYWHERE:
                    self.problems.append(Problem(
                        line, tag, f"attribute '{name}' is not valid on <{tag}>"
                        + suggest(name, ATTRIBUTES[tag]), f"{name}="))
        if tag in ENDING:
            self.raw_until = tag
        if tag == "mj-attributes":
            self.in_attributes += 1
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.raw_until:
            if tag != self.raw_until:
                return
            self.raw_until = None
        if not (tag == "mjml" or tag.startswith("mj-")):
            return
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass
        if tag == "mj-attributes":
            self.in_attributes -= 1


def lint(source: str) -> list[Problem]:
    """Problems in rendered MJML source, each once."""
    linter = _Linter()
    linter.feed(source)
    linter.close()
    seen: set[tuple[str, str]] = set()
    unique = []
    for problem in linter.problems:
        if (problem.tag, problem.message) not in seen:
            seen.add((problem.tag, problem.message))
            unique.append(problem)
    return unique


def locate(problem: Problem, folders: list[Path], root: Path) -> tuple[str, int | None]:
    """The layout file and line that most likely wrote the problem (author's files first)."""
    pattern = re.compile(re.escape(problem.needle))
    for folder in folders:
        for path in sorted(folder.rglob("*.j2")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line) and (problem.needle.startswith("<")
                                             or f"<{problem.tag}" in line):
                    try:
                        shown = path.relative_to(root).as_posix()
                    except ValueError:
                        shown = "(built-in) " + path.relative_to(folder.parent).as_posix()
                    return shown, number
    return "layouts/email/base.mjml.j2", None


def findings(source: str, folders: list[Path], root: Path) -> list[Finding]:
    """MJML warnings as findings pointing into the email layouts."""
    out = []
    for problem in lint(source):
        path, line = locate(problem, folders, root)
        out.append(Finding(path, line, f"MJML: {problem.message}", "warning"))
    return out
