"""Errors as values with a place: every user mistake names its file, line and a fix."""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finding:
    """One problem found in the author's files, with where it is."""

    path: str
    line: int | None
    message: str
    level: str = "error"  # error | warning

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


def finding_line(finding: Finding) -> str:
    """One finding as every verb and the preview print it: `path:line: level: message`."""
    where = f"{finding.path}:{finding.line}" if finding.line else finding.path
    return f"{where}: {finding.level}: {finding.message}"


class Counted:
    """Error and warning counts for anything holding `findings` (a check's result, a view)."""

    findings: tuple[Finding, ...]

    @property
    def errors(self) -> int:
        """How many findings are errors."""
        return sum(f.level == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        """How many findings are warnings."""
        return len(self.findings) - self.errors


class RunletterError(Exception):
    """A user-facing error: the CLI prints it on one line and exits 1, with no traceback."""

    def __init__(self, findings: Finding | Iterable[Finding] | str):
        if isinstance(findings, str):
            findings = [Finding("runletter", None, findings)]
        elif isinstance(findings, Finding):
            findings = [findings]
        self.findings: tuple[Finding, ...] = tuple(findings)
        super().__init__("\n".join(str(f) for f in self.findings))


def suggest(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def display_path(path: Path | str, root: Path | None = None) -> str:
    """Show a path relative to the project root when it lies inside it."""
    p = Path(path)
    if root is not None:
        # The common case (a file found under the root) needs no filesystem lookups.
        if p.is_absolute() and root.is_absolute() and p.is_relative_to(root):
            return p.relative_to(root).as_posix()
        try:
            return p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return p.as_posix()


# A full disk or quota, whoever reports it: the OS, SQLite (its own message) or PostgreSQL
# (SQLSTATE 53100 disk_full).
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """True when an error (or the database error it wraps) says the disk or quota is full."""
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, OSError):
        return orig.errno in _FULL
    return getattr(orig, "sqlstate", None) == "53100" or "database or disk is full" in str(orig)


def write_error(exc: OSError, shown: str) -> RunletterError:
    """What a failed write of `shown` says: one line, and for a full disk what to do."""
    if is_disk_full(exc):
        return RunletterError(f"no space left on device writing {shown}; free some space "
                              "and run again")
    return RunletterError(f"cannot write {shown}: {exc.strerror or exc}")
