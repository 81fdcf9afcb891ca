"""`runletter report`: the ledger of one post, per segment and delivery state."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from publisher.project import Project
from publisher.store import Store
from publisher.store.ledger import Ledger


@dataclass(frozen=True)
class LedgerReport:
    """Ledger rows of a post per segment (goals.toml order) and state; empty if unpublished."""

    post: str
    segments: tuple[tuple[str, Counter], ...]


def ledger_report(project: Project, post: str) -> LedgerReport:
    """The ledger of POST (a slug or a path)."""
    slug = project.post(post).slug
    with Store.open(project.config.store_url()) as store:
        table = Ledger(store).report(slug)
    return LedgerReport(post=slug, segments=in_goals_order(table, project.goals.slugs))


def step_report(project: Project, key: str) -> LedgerReport:
    """The ledger of one sequence step (its key, '<sequence>/<step>')."""
    with Store.open(project.config.store_url()) as store:
        table = Ledger(store).report(key)
    return LedgerReport(post=key, segments=in_goals_order(table, project.goals.slugs))


def in_goals_order(table: dict[str, Counter],
                   order: tuple[str, ...]) -> tuple[tuple[str, Counter], ...]:
    """Rows by segment as goals.toml lists them; segments it does not list come last."""
    rank = {slug: i for i, slug in enumerate(order)}
    return tuple(sorted(table.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))
