"""One record of a file, read with its plan into the reader it lands as, or the reasons it
cannot land. A status is only ever made stricter by the file's kind or --status."""

from __future__ import annotations

from publisher.arrivals.base import RowProblem, Unreadable, stricter
from publisher.arrivals.goals import GoalMatcher
from publisher.arrivals.plan import Plan
from publisher.emails import normalize_email, show_value, validate_email
from publisher.model import EVERYONE
from publisher.store.landing import Landing
from publisher.store.records import name_problem


class Row:
    """A record read: the reader to land (None: no usable address), and what went wrong."""

    __slots__ = ("landing", "left_out", "problems", "unreadable")

    def __init__(self, problems: list[str] | None = None):
        self.landing: Landing | None = None
        self.problems = problems or []
        self.unreadable: list[tuple[str, str]] = []  # (column, why)
        self.left_out: str | None = None  # why the row is deliberately not imported


def read_row(plan: Plan, goals: GoalMatcher, record: list[str]) -> Row:
    """Read one record (already known not to be blank)."""
    if len(record) != len(plan.header):
        return Row([f"the row has {len(record)} fields; the header has "
                    f"{len(plan.header)} ({','.join(plan.header)})"])
    values, failed, row = _values(plan, record)
    email = str(values.get("email") or "")
    reason = validate_email(email)
    if reason:
        row.problems.insert(0, f"invalid email {show_value(email)}: {reason}")
        return row
    email = normalize_email(email)
    row.left_out = plan.format.skip(email)
    first_name = values.get("first_name")
    if first_name is not None and (problem := name_problem(str(first_name))):
        row.problems.append(problem)
    goal = _goal(plan, goals, values.get("goal"), row.problems)
    status = values.get("status")
    if plan.file_status or plan.default_status:
        status = stricter(status, plan.file_status, plan.default_status)
    if status is None and plan.format.needs_status and "status" not in failed:
        known = ", ".join(plan.format.statuses)
        row.problems.append(f"no {plan.format.name} status" + (f" (known: {known})"
                                                               if known else ""))
    get = values.get
    row.landing = Landing(email, first_name, goal, get("tags"), status,
                          get("consent_source") or plan.consent_source, get("consent_at"),
                          get("consent_ip"), get("created_at"), get("updated_at"),
                          get("race_date"), get("race_name"), get("timezone"))
    return row


def _values(plan: Plan, record: list[str]) -> tuple[dict, set[str], Row]:
    """Each field from the first of its columns that gives a value."""
    values: dict = {}
    failed: set[str] = set()
    row = Row()
    for indexes, name, read, blank in plan.feeds:
        if name in values or name in failed:
            continue
        for index in indexes:
            raw = record[index]
            if not blank and not raw.strip():
                continue
            try:
                value = read(raw)
            except RowProblem as exc:
                row.problems.append(str(exc))
                failed.add(name)
                break
            except Unreadable as exc:
                row.unreadable.append((plan.header[index], str(exc)))
                continue
            if value is not None:
                values[name] = value
                break
    return values, failed, row


def _goal(plan: Plan, goals: GoalMatcher, given: object, problems: list[str]) -> str | None:
    """The goal's slug; a blank cell (Runletter's own CSV) or none: --goal, else the default."""
    if given is None:
        return plan.default_goal
    text = str(given)
    if not text.strip():
        return plan.default_goal or EVERYONE
    slug = goals.match(text)
    if slug is None:
        problems.append(goals.problem(text))
    return slug
