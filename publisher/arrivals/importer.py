"""`subscribers import`: a file streamed row by row into one transaction. Bad rows are named
by line and skipped, good rows land, and a file that is not UTF-8 or not CSV imports nothing."""

from __future__ import annotations

import codecs
import csv
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from publisher.arrivals.goals import GoalMatcher
from publisher.arrivals.plan import ArrivalOptions, Plan, make_plan
from publisher.arrivals.report import ArrivalReport
from publisher.arrivals.rows import Row, read_row
from publisher.errors import Finding, RunletterError, display_path
from publisher.model import Goals
from publisher.store import LEFT, Store
from publisher.store.landing import Landed, Lander, Landing, importing

BATCH = 500  # rows read, then landed together: memory stays at one batch
NOT_UTF8 = "not UTF-8 text; save it as 'CSV UTF-8' and import again (nothing imported)"


def import_file(store: Store, path: Path, goals: Goals,
                options: ArrivalOptions | None = None, *,
                display: str | None = None) -> ArrivalReport:
    """Import readers from an export file in one transaction (none on a dry run)."""
    options = options or ArrivalOptions()
    path = Path(path)
    shown = display or display_path(path)
    matcher = GoalMatcher(goals)
    with _open(path, shown) as handle:
        reader = csv.reader(handle)
        header = _next(reader, path, shown, 0)
        plan = make_plan(header or [], options, path.name, shown, matcher)
        tally = _Tally(plan, shown)
        with importing(store, shown, dry_run=options.dry_run, enrol=options.enrol) as lander:
            batch: list[tuple[int, Row]] = []
            for line, record in _records(reader, path, shown):
                batch.append((line, read_row(plan, matcher, record)))
                if len(batch) == BATCH:
                    tally.take(batch, lander)
                    batch = []
            tally.take(batch, lander)
    return replace(tally.report(options.dry_run), enrol=options.enrol)


def _open(path: Path, shown: str) -> TextIO:
    try:
        # utf-8-sig drops a BOM before the header (Excel's "CSV UTF-8", Mailchimp).
        return path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise RunletterError(Finding(shown, None, f"cannot read the file: "
                                     f"{exc.strerror or exc}")) from None


def _next(reader, path: Path, shown: str, previous_end: int) -> list[str] | None:
    """The next record; a decoding or CSV error is a RunletterError (the import rolls back)."""
    try:
        return next(reader, None)
    except csv.Error as exc:
        where = "the header is not valid CSV" if previous_end == 0 else "not valid CSV"
        raise RunletterError(Finding(shown, previous_end + 1,
                                     f"{where}: {exc}; nothing imported")) from None
    except UnicodeDecodeError:
        raise RunletterError(Finding(shown, _first_bad_line(path), NOT_UTF8)) from None


def _records(reader, path: Path, shown: str) -> Iterator[tuple[int, list[str]]]:
    """Non-blank records with the line each starts on (a quoted cell may span lines)."""
    previous_end = reader.line_num
    while (record := _next(reader, path, shown, previous_end)) is not None:
        line, previous_end = previous_end + 1, reader.line_num
        # Blank lines and spreadsheet filler (",,,") are skipped; most rows start with text.
        if (record and record[0].strip()) or any(cell.strip() for cell in record):
            yield line, record


def _first_bad_line(path: Path) -> int:
    """The line of the first byte that is not UTF-8, read again in pieces to say where."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    number = 0
    with path.open("rb") as raw:
        for number, chunk in enumerate(raw, start=1):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return number
    return max(number, 1)


class _Tally:
    """Counts and findings of one import, row by row."""

    def __init__(self, plan: Plan, shown: str):
        self.plan, self.shown = plan, shown
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.goals: Counter[str] = Counter()
        self.findings: list[Finding] = []
        self.unreadable: dict[str, tuple[int, int, str]] = {}  # column -> (count, line, why)

    def take(self, batch: list[tuple[int, Row]], lander: Lander) -> None:
        """Land a batch of rows, and note why the others did not land."""
        findings: list[Finding] = []
        earlier = lander.claim([(row.landing.email, line) for line, row in batch
                                if row.landing is not None and not row.left_out])
        good: list[tuple[int, Landing]] = []
        opt_outs: list[tuple[int, str, str]] = []  # skipped rows that say the person left
        for line, row in batch:
            self._note_unreadable(line, row)
            if row.left_out:
                self.counts["left out"] += 1
                findings.append(Finding(self.shown, line, row.left_out, level="warning"))
                continue
            if line in earlier:
                row.problems.append(f"duplicate: {row.landing.email} is already on line "
                                    f"{earlier[line]}; each reader may appear once")
            if row.problems or row.landing is None:
                self.counts["skipped"] += 1
                findings.append(Finding(self.shown, line,
                                        "; ".join(row.problems) + " (row skipped)"))
                if row.landing is not None and row.landing.status in LEFT:
                    opt_outs.append((line, row.landing.email, row.landing.status))
            else:
                good.append((line, row.landing))
        for (line, landing), landed in zip(good, lander.land(good), strict=True):
            self._count(landed)
            if landed.kept:
                findings.append(Finding(
                    self.shown, line, f"{landing.email}: kept {landed.kept}; a reader who "
                    "left must re-subscribe themselves", level="warning"))
        findings += self._keep_opt_outs(opt_outs, lander)
        self.findings += sorted(findings, key=lambda f: f.line or 0)

    def _keep_opt_outs(self, opt_outs: list[tuple[int, str, str]],
                       lander: Lander) -> list[Finding]:
        """A skipped row still takes a stored reader off the list when it says they left."""
        statuses = {line: status for line, _, status in opt_outs}
        kept = []
        for line, email, old in lander.keep_opt_outs(opt_outs):
            self.counts["opt-outs kept"] += 1
            kept.append(Finding(self.shown, line, f"{email}: {old} until now, "
                                f"{statuses[line]} as this skipped row says", level="warning"))
        return kept

    def _count(self, landed: Landed) -> None:
        self.counts[landed.outcome] += 1
        self.statuses[landed.status] += 1
        self.goals[landed.goal] += 1

    def _note_unreadable(self, line: int, row: Row) -> None:
        for column, why in row.unreadable:
            count, first, reason = self.unreadable.get(column, (0, line, why))
            self.unreadable[column] = (count + 1, first, reason)

    def report(self, dry_run: bool) -> ArrivalReport:
        """What the import did (or, on a dry run, would do)."""
        notes = [Finding(self.shown, first, f"{column} {why}" + (
            f" (and {count - 1} more rows)" if count > 1 else "") + "; left unread",
            level="warning") for column, (count, first, why) in self.unreadable.items()]
        return ArrivalReport(
            added=self.counts["added"], updated=self.counts["updated"],
            unchanged=self.counts["unchanged"], skipped=self.counts["skipped"],
            findings=(*self.findings, *notes), left_out=self.counts["left out"],
            opt_outs_kept=self.counts["opt-outs kept"],
            plan=self.plan, statuses=dict(self.statuses), goals=dict(self.goals),
            dry_run=dry_run)
