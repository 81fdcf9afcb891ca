"""The CLI's one voice: findings as `path:line: level: message`, one summary line, counts
that agree in number, and tables with a header row."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from publisher.errors import Finding, RunletterError, finding_line, is_disk_full

# Nouns whose plural is not noun + "s"; every count the CLI prints goes through plural().
_IRREGULAR = {"batch": "batches", "copy": "copies", "delivery": "deliveries", "try": "tries"}


class VoicedGroup(click.Group):
    """A click group whose verbs speak in this voice: a RunletterError prints as its findings
    and one summary line and exits 1, never a traceback. Verbs in `lazy` (name ->
    "module:attribute") are imported only when used."""

    lazy: dict[str, str] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, _, attr = self.lazy[name].partition(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RunletterError as exc:
            summarize(exc.findings)
            ctx.exit(1)
        except Exception as exc:
            # A full disk is the machine's state, not a bug: say so, not a traceback.
            if not is_disk_full(exc):
                raise
            where = getattr(exc, "filename", None) or "the subscriber store"
            summarize(RunletterError(f"no space left on device writing {where}; free some "
                                     "space and run again").findings)
            ctx.exit(1)


def plural(n: int, noun: str) -> str:
    """'1 post', '2 posts', '0 batches': a count with its noun in the right number."""
    return f"{n} {noun if n == 1 else _IRREGULAR.get(noun, noun + 's')}"


def tally(findings: Iterable[Finding]) -> str:
    """The summary of findings: '1 error', '2 errors, 1 warning', or 'no problems found'."""
    levels = [f.level for f in findings]
    errors = levels.count("error")
    parts = [plural(n, word) for n, word in ((errors, "error"),
                                             (len(levels) - errors, "warning")) if n]
    return ", ".join(parts) or "no problems found"


def report(findings: Iterable[Finding]) -> None:
    """Print findings to stderr, errors before warnings (the summary line is the caller's)."""
    for finding in sorted(findings, key=lambda f: f.level != "error"):
        click.echo(finding_line(finding), err=True)


def summarize(findings: Sequence[Finding]) -> None:
    """Print findings and their summary line (how every verb ends on a user's mistake)."""
    report(findings)
    click.echo(tally(findings), err=True)


def table(rows: Sequence[Sequence[str]]) -> None:
    """Print rows as columns, the first (the header) included; names left, numbers right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def progress_notice(bar: Any, label: str) -> Callable[[str], None]:
    """Show a notice (the provider asked to wait) in a progress bar's line, or clear it."""
    def notice(text: str) -> None:
        bar.label = f"{label} ({text})" if text else label
        bar.render_progress()
    return notice
