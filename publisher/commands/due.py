"""`runletter publish --due` and `runletter due`: scheduled posts and sequence steps, decided
per reader at one moment (the clock, or `--now`), rendered once per item, sent through the
ledger like any publish.

`decide` reads only; `send` writes the decision (planned and skipped rows, enrolments) and
then sends each item with the same claim-before-send as `publish`, so an overlapping run
finds nothing left to claim.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from publisher.commands.publish import (
    ChosenProvider,
    Publication,
    render_and_check,
    settle_delivered,
)
from publisher.content.sequences import load_sequences
from publisher.content.when import zone
from publisher.delivery.address import Addresser
from publisher.delivery.send import send_rendered
from publisher.errors import Finding, RunletterError, suggest
from publisher.project import Project
from publisher.schedule.agenda import Agenda
from publisher.store import Store
from publisher.store.agenda import AgendaQueries
from publisher.store.ledger import Ledger

if TYPE_CHECKING:
    from publisher.content.sequences import Sequence
    from publisher.delivery.send import Outcome
    from publisher.delivery.tokens import Signer
    from publisher.model import Post
    from publisher.schedule.agenda import Decision
    from publisher.schedule.rules import Upcoming
    from publisher.store import Store


@dataclass(frozen=True)
class Scheduled:
    """What the project schedules: posts with a send_at, and sequences."""

    posts: tuple[Post, ...]
    sequences: tuple[Sequence, ...]

    def item(self, key: str) -> Post | None:
        """The post or step an item key names."""
        for post in self.posts:
            if post.slug == key:
                return post
        for sequence in self.sequences:
            for step in sequence.steps:
                if step.key == key:
                    return step.post
        return None


def scheduled(project: Project, posts: bool = True) -> Scheduled:
    """Read the project's scheduled posts (unless `posts` is False) and its sequences,
    gathering all errors before raising."""
    findings: list[Finding] = []
    found: tuple = ()
    sequences: tuple = ()
    try:
        found = tuple(p for p in project.posts() if p.send_at is not None) if posts else ()
    except RunletterError as exc:
        findings.extend(exc.findings)
    try:
        sequences = load_sequences(project.config.content_dir, project.root, project.goals)
    except RunletterError as exc:
        findings.extend(exc.findings)
    if findings:
        raise RunletterError(findings)
    return Scheduled(found, sequences)


def agenda_for(project: Project, store: Store, plan: Scheduled) -> Agenda:
    """The agenda of this project's scheduled items over this store."""
    return Agenda(project.config, store, plan.sequences, plan.posts, project.goals.slugs)


@dataclass(frozen=True)
class DueItem:
    """One item of a run: readers to send to now (new and left over), to skip, and its
    rendered editions with what checking them found."""

    item: str
    send: int
    skip: int
    publication: Publication | None
    problems: tuple[Finding, ...] = ()  # references that did not resolve
    resend: int = 0  # rows left in flight, released and sent again (--resend-in-flight)

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Everything checking the item found."""
        return self.problems + (self.publication.findings if self.publication else ())

    @property
    def errors(self) -> tuple[Finding, ...]:
        """Check errors: the item is held back (not sent) while they stand."""
        return tuple(f for f in self.findings if f.level == "error")


@dataclass(frozen=True)
class DueRun:
    """What a `publish --due` run decided at its moment, before anything is written."""

    at: dt.datetime
    items: tuple[DueItem, ...]
    decision: Decision
    in_flight: tuple[tuple[str, int], ...] = ()  # rows an earlier run left in doubt

    @property
    def to_send(self) -> int:
        """Messages the run would send (items held back by errors not counted)."""
        return sum(i.send for i in self.items if not i.errors)

    @property
    def held(self) -> tuple[str, ...]:
        """Items not sent because checking them found errors."""
        return tuple(i.item for i in self.items if i.errors)


def decide(project: Project, at: dt.datetime, resend_in_flight: bool = False) -> DueRun:
    """What is due at `at`, each item to send rendered once and checked; nothing written
    but the rows of calls a stopped run claimed and never sent, put back to be sent.
    With `resend_in_flight`, every item with rows left in flight is sent too (those rows
    again), rendered like a due item even when nothing else of it is due."""
    plan = scheduled(project)
    with Store.open(project.config.store_url()) as store:
        Ledger(store).take_back_unsent()
        agenda = agenda_for(project, store, plan)
        decision = agenda.decide(at)
        leftover = {key: agenda.queries.count_unsent(key) for key in agenda.unsettled()}
        doubt = tuple(agenda.in_flight().items())
    again = dict(doubt) if resend_in_flight else {}
    keys = [k for k in decision.items if decision.items[k].send or decision.items[k].skip]
    keys += [k for k in dict.fromkeys([*leftover, *again]) if k not in keys]
    items = []
    for key in keys:
        chosen = decision.items.get(key)
        send = (len(chosen.send) if chosen else 0) + leftover.get(key, 0) + again.get(key, 0)
        publication, problems = _rendered(project, plan.item(key)) if send else (None, ())
        items.append(DueItem(key, send, len(chosen.skip) if chosen else 0, publication,
                             problems, again.get(key, 0)))
    return DueRun(at, tuple(items), decision, doubt)


def _rendered(project: Project, post: Post | None
              ) -> tuple[Publication | None, tuple[Finding, ...]]:
    """An item's editions rendered and checked (a step per reader slots, like a post), or
    why it could not be resolved."""
    if post is None:
        return None, ()
    try:
        return render_and_check(project, project.resolve(post)), ()
    except RunletterError as exc:
        return None, tuple(exc.findings)


@contextmanager
def sending(run: DueRun, project: Project, provider: ChosenProvider, signer: Signer
            ) -> Iterator[Callable[..., list[tuple[str, Outcome]]]]:
    """Write the run's decision, open the provider once, and yield `send(progress=None,
    notice=None)`, which sends every item that checked clean, one after another (first
    releasing the in-flight rows of the items the run resends)."""
    delivery = project.config.delivery
    addresser = Addresser(project.config, signer)
    with Store.open(project.config.store_url()) as store:
        agenda = agenda_for(project, store, scheduled(project))
        agenda.apply(run.decision, held=run.held)
        ledger = Ledger(store)

        def send(progress=None, notice=None) -> list[tuple[str, Outcome]]:
            done = []
            for item in run.items:
                if item.publication is None or item.errors:
                    continue
                if item.resend:  # the outbox's files in new/ are marked sent, not resent
                    settle_delivered(ledger, item.item, sender)
                    ledger.release_in_flight(item.item)
                ledger.retry_failed(item.item)
                done.append((item.item, send_rendered(
                    item.publication.rendered, ledger, sender, addresser,
                    max_attempts=delivery.max_attempts, backoff_base=delivery.backoff_base,
                    backoff_max=delivery.backoff_max,
                    retry_after_max=delivery.retry_after_max, progress=progress,
                    notice=notice)))
            return done

        with provider.cls(project.config, addresser, provider.settings) as sender:
            yield send


def record_only(run: DueRun, project: Project) -> None:
    """Write a run's decision when nothing is to be sent (skipped rows, enrolments)."""
    with Store.open(project.config.store_url()) as store:
        agenda_for(project, store, scheduled(project)).apply(run.decision, held=run.held)


# -- looking ahead --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outlook:
    """`runletter due`: per item, readers due now and per date ahead."""

    at: dt.datetime
    until: dt.datetime
    now: dict[str, tuple[int, int]]  # item -> (send, skip)
    ahead: dict[str, Counter]  # item -> {date: readers}
    waiting: dict[str, int]  # gated step -> readers who have not said ready
    unreadable: dict[int, str] = field(default_factory=dict)  # readers left out, and why


def outlook(project: Project, at: dt.datetime, days: int) -> Outlook:
    """What is due at `at` and on each day of the next `days`."""
    plan = scheduled(project)
    until = at + dt.timedelta(days=days)
    with Store.open(project.config.store_url()) as store:
        agenda = agenda_for(project, store, plan)
        decision = agenda.decide(at)
        ahead = agenda.forecast(at, until)
        waiting: Counter = Counter()
        for sequence in plan.sequences:
            waiting.update(agenda.waiting(sequence))
    now = {k: (len(d.send), len(d.skip)) for k, d in decision.items.items()
           if d.send or d.skip}
    return Outlook(at, until, now, ahead, dict(waiting), dict(agenda.unreadable))


@dataclass(frozen=True)
class ReaderPlan:
    """One reader's items ahead, in their own zone."""

    email: str
    zone: str
    race: str
    upcoming: tuple[Upcoming, ...]
    signed_up: str | None = None  # the stored consent time; None: unknown, never invented


def reader_plan(project: Project, email: str, at: dt.datetime,
                days: int | None = None) -> ReaderPlan:
    """A reader's upcoming items (within `days`, when given)."""
    plan = scheduled(project)
    with Store.open(project.config.store_url()) as store:
        reader = store.get(email)
        if reader is None:
            raise RunletterError(f"--reader {email}: no such subscriber; "
                                 "'runletter subscribers list' shows them")
        upcoming = agenda_for(project, store, plan).reader_plan(reader.id, at)
    if days is not None:
        until = at + dt.timedelta(days=days)
        upcoming = [u for u in upcoming if u.at is None or u.at <= until]
    tz = zone(reader.timezone, project.config.schedule.timezone)
    race = f"{reader.race_name or 'race'} on {reader.race_date}" if reader.race_date else ""
    return ReaderPlan(reader.email, str(tz.key), race, tuple(upcoming), reader.signed_up)


# -- reports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceReport:
    """Every step of a sequence with its ledger counts and readers waiting at its gate."""

    sequence: str
    steps: tuple[tuple[str, Counter, int], ...]  # (step key, states, waiting at its gate)


def sequence_report(project: Project, name: str) -> SequenceReport:
    """Counts per step of one sequence."""
    plan = scheduled(project, posts=False)
    sequence = find_sequence(plan, name)
    with Store.open(project.config.store_url()) as store:
        waiting = agenda_for(project, store, plan).waiting(sequence)
        queries = AgendaQueries(store)
        counts = {key: queries.states(key) for key in (s.key for s in sequence.steps)}
    return SequenceReport(sequence.slug, tuple((s.key, counts[s.key], waiting.get(s.key, 0))
                                               for s in sequence.steps))


def find_sequence(plan: Scheduled, name: str) -> Sequence:
    """A sequence by slug, with a suggestion when there is none."""
    slugs = [s.slug for s in plan.sequences]
    for sequence in plan.sequences:
        if sequence.slug == name.strip("/"):
            return sequence
    raise RunletterError(f"no sequence '{name}' in content/sequences" + suggest(name, slugs)
                         + (f"; sequences are: {', '.join(slugs)}" if slugs else ""))


def find_step(plan: Scheduled, name: str) -> str:
    """A step's key from '<sequence>/<step>' (the step's file name, .md optional)."""
    sequence = find_sequence(plan, name.split("/", 1)[0])
    step_name = name.split("/", 1)[1].removesuffix(".md")
    step = sequence.step(step_name)
    if step is None:
        names = [s.name for s in sequence.steps]
        raise RunletterError(f"no step '{step_name}' in sequence '{sequence.slug}'"
                             + suggest(step_name, names) + f"; steps are: {', '.join(names)}")
    return step.key
