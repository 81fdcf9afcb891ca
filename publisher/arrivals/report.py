"""What an import did, or would do on a dry run, and how the command shows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from publisher.errors import Finding

if TYPE_CHECKING:
    from publisher.arrivals.plan import Plan


@dataclass(frozen=True)
class ArrivalReport:
    """What an import did: counts, a Finding per skipped row or kept status, the format read,
    its column mapping and the resulting counts per status and goal."""

    added: int
    updated: int
    unchanged: int
    skipped: int
    findings: tuple[Finding, ...]
    left_out: int = 0
    opt_outs_kept: int = 0  # stored readers taken off the list by rows that were skipped
    plan: Plan | None = None
    statuses: dict[str, int] = field(default_factory=dict)  # landed readers per status
    goals: dict[str, int] = field(default_factory=dict)  # landed readers per goal
    dry_run: bool = False
    enrol: bool = False  # --enrol: the readers join the signup sequences from the import
    signup_sequences: tuple[str, ...] = ()  # the newsletter's, for the enrol line

    @property
    def errors(self) -> tuple[Finding, ...]:
        """Findings for rows that were skipped."""
        return tuple(f for f in self.findings if f.level == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """Findings for rows that landed with something kept as it was."""
        return tuple(f for f in self.findings if f.level == "warning")

    def enrol_line(self) -> str | None:
        """Whether the file's readers are in the signup sequences (None: there are none)."""
        names = ", ".join(self.signup_sequences)
        if not names or not (self.added or self.enrol):
            return None
        if self.enrol:
            return f"enrolled in signup sequences ({names}) from the time of this import"
        return f"not enrolled in signup sequences ({names}): pass --enrol to enrol them"

    def format_line(self) -> str:
        """'detected format: mailchimp (from the header)', with the file's kind if any."""
        assert self.plan is not None
        plan = self.plan
        verb = "detected format" if plan.how == "from the header" else "format"
        line = f"{verb}: {plan.format.name} ({plan.how})"
        return line + (f"; file: {plan.kind}" if plan.kind else "")

    def mapping_lines(self) -> list[str]:
        """One line per column read ('Email Address → email'), then the columns ignored."""
        assert self.plan is not None
        lines = [f"  {column} → {', '.join(fields)}" for column, fields in self.plan.mapping]
        if self.plan.ignored:
            lines.append(f"  ignored: {', '.join(self.plan.ignored)}")
        return lines

    def count_lines(self) -> list[str]:
        """Readers per status and per goal, as they are (or would be) after the import."""
        return [f"status: {_counts(self.statuses)}", f"goal: {_counts(self.goals)}"]

    def summary(self, shown: str) -> str:
        """The last line: what was (or would be) added, updated, left alone and skipped."""
        counts = (f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
                  f"{self.skipped} skipped"
                  + (f", {self.left_out} left out" if self.left_out else "")
                  + (f", {self.opt_outs_kept} opt-outs of skipped rows kept"
                     if self.opt_outs_kept else ""))
        if self.dry_run:
            return f"dry run of {shown}: would be {counts}; nothing written"
        return f"imported {shown}: {counts}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {n}" for key, n in sorted(counts.items())) or "none"
