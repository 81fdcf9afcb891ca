"""`runletter publish`: a post rendered once, checked, planned, sent; then the archive rebuilt.

The verb runs in steps so the CLI can print between them and ask before anything goes out:
`prepare` (resolve, render every edition once, check them) → `choose_provider` → `plan`
(what the ledger would send) → `sending` then `settle`, or `send_test_copy`. The editions
`prepare` rendered are the ones checked, linted and sent.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from publisher import clock
from publisher.delivery.address import Addresser
from publisher.delivery.providers import provider_class
from publisher.delivery.providers.base import (
    ACCEPTED,
    Batch,
    Receipt,
    provider_settings,
    unknown_env_settings,
)
from publisher.delivery.send import send_rendered
from publisher.delivery.tokens import SECRET_ENV, Signer, load_secret
from publisher.errors import Finding, RunletterError, suggest
from publisher.project import Project
from publisher.render.archive import SiteBuilder
from publisher.render.check import check_rendered
from publisher.render.email import EmailRenderer
from publisher.schedule.rules import published_at
from publisher.store import Store, validate_email
from publisher.store.ledger import Ledger

if TYPE_CHECKING:
    from publisher.delivery.send import Outcome
    from publisher.model import Post, Resolved
    from publisher.render.email import Rendered
    from publisher.store.ledger import PublishPreview

# The ledger states a publish's summary shows per segment, in this order.
SENT_STATES = ("sent", "rejected", "failed", "in-flight")


@dataclass(frozen=True)
class Publication:
    """A post ready to go out: every edition rendered once, and what checking them found."""

    project: Project
    rendered: Rendered
    findings: tuple[Finding, ...]

    @property
    def post(self) -> Post:
        """The post as the author wrote it."""
        return self.rendered.resolved.post

    @property
    def goals(self) -> tuple[str, ...]:
        """The segments of its audience, in goals.toml order."""
        return tuple(r.goal.slug for r in self.rendered.renditions)

    @property
    def errors(self) -> int:
        """How many findings are errors (any one stops the publish)."""
        return sum(f.level == "error" for f in self.findings)


@dataclass(frozen=True)
class ChosenProvider:
    """The provider chosen for this run, its settings, and environment variables it ignores."""

    name: str
    cls: type
    settings: Any
    unknown_env: tuple[str, ...]


@dataclass(frozen=True)
class Planned:
    """What a publish would send now, per segment, and what is settled already."""

    plan: PublishPreview
    to_send: int

    @property
    def nobody(self) -> bool:
        """The audience has no active reader at all (as opposed to everyone having it)."""
        plan = self.plan
        return not (plan.total or sum(plan.done.values()) or plan.in_flight)


@dataclass(frozen=True)
class Sent:
    """What a send did, and what the author should know after it."""

    outcome: Outcome
    segments: tuple[tuple[str, Counter], ...]  # the ledger per segment after the run
    archive_problem: Finding | None  # why the archive was not rebuilt, if it was not
    stopped: Finding | None  # why the run stopped before the end, if it did


def prepare(project: Project, post: str, test_to: str | None = None,
            test_goal: str | None = None) -> Publication:
    """Resolve POST, render each of its editions once and check them; a draft only goes
    out as a test copy (to `test_to`)."""
    resolved = project.resolve(project.post(post))
    draft = resolved.post
    if test_goal and not test_to:
        raise RunletterError("--goal goes with --to (a test copy); a publish sends every "
                             "reader their own goal's edition")
    if draft.is_draft and not test_to:
        raise RunletterError(Finding(draft.source.display, draft.source.line("status"),
                                     "is a draft; set 'status: ready' to send it "
                                     "(or send yourself a test copy with --to)"))
    if not test_to and (problem := scheduled_later(project, draft)):
        raise RunletterError(problem)
    return render_and_check(project, resolved)


def render_and_check(project: Project, resolved: Resolved) -> Publication:
    """Every edition of a resolved post (or step) rendered once, and checked."""
    rendered = EmailRenderer(project.config).render(resolved)
    return Publication(project, rendered, tuple(check_rendered(project, [rendered])))


def scheduled_later(project: Project, post: Post) -> Finding | None:
    """Why a plain publish refuses a post whose send_at is still ahead (None if it is not)."""
    schedule = project.config.schedule
    when = published_at(post, schedule)
    if when is None or when <= clock.now():
        return None
    if isinstance(post.send_at, dt.datetime):
        send_time = when.strftime("%Y-%m-%d %H:%M UTC")
    else:
        send_time = f"{post.send_at} at {schedule.send_hour:02d}:00 in each reader's time zone"
    return Finding(post.source.display, post.source.line("send_at"),
                   f"is scheduled for {send_time} (send_at); 'runletter publish --due' sends it "
                   "then, from cron or a timer")


def choose_provider(project: Project, name: str | None) -> ChosenProvider:
    """The provider named (or runletter.toml's) with its settings from file and environment."""
    chosen = name or project.config.delivery.provider
    cls = provider_class(chosen)
    settings = provider_settings(cls, project.config)
    return ChosenProvider(chosen, cls, settings, tuple(unknown_env_settings(cls)))


def sign_links(project: Project, provider: ChosenProvider) -> tuple[Signer, str | None]:
    """The signer of reader links, and a note when a secret was generated for the outbox;
    every provider that sends real mail needs RUNLETTER_SECRET."""
    if provider.cls.needs_secret_env and not os.environ.get(SECRET_ENV):
        raise RunletterError(
            f"{SECRET_ENV} is not set: the '{provider.cls.name}' provider sends real mail, "
            "so reader links must be signed with your own secret; set it with "
            f"export {SECRET_ENV}=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    secret, told = load_secret(project.root, create=True)
    return Signer(secret), told


def copy_goal(publication: Publication, to: str, goal: str | None) -> str:
    """The goal whose edition a test copy to `to` gets (default: the first of the audience)."""
    if reason := validate_email(to):
        raise RunletterError(f"--to {to}: not an email address ({reason})")
    goals = publication.goals
    chosen = goal or goals[0]
    if chosen not in goals:
        raise RunletterError(f"--goal {chosen}: not in the post's audience"
                             + suggest(chosen, goals) + f"; it is: {', '.join(goals)}")
    return chosen


def send_test_copy(publication: Publication, provider: ChosenProvider, signer: Signer, to: str,
                   goal: str) -> None:
    """Send one copy of `goal`'s edition to `to`, outside the ledger."""
    config = publication.project.config
    addresser = Addresser(config, signer)
    edition = publication.rendered.editions[goal]
    # A Message-ID of its own each time, so a mail client shows every test copy.
    recipient = addresser.recipient(f"test-{publication.post.slug}-{time.time_ns()}", 0, to, "")
    with provider.cls(config, addresser, provider.settings) as sender:
        [receipt] = sender.send(Batch(edition, addresser.compile(edition), (recipient,)))
    if receipt.status != "accepted":
        raise RunletterError(f"test copy to {to} not sent: {receipt.reason}")


def plan(publication: Publication, resend_in_flight: bool = False) -> Planned:
    """What the ledger would send now (nothing is written but the rows of calls a stopped
    run claimed and never sent, put back to be sent)."""
    project = publication.project
    with Store.open(project.config.store_url()) as store:
        Ledger(store).take_back_unsent(publication.post.slug)
        found = Ledger(store).preview(publication.post.slug, publication.goals,
                                      project.goals.slugs)
    return Planned(found, found.total + (found.in_flight if resend_in_flight else 0))


@contextmanager
def sending(publication: Publication, provider: ChosenProvider, signer: Signer,
            resend_in_flight: bool = False) -> Iterator[Callable[..., Outcome]]:
    """Plan every reader in the ledger and open the provider; yields `send(progress=None,
    notice=None)`, which sends the editions `prepare` rendered and returns the Outcome."""
    project, slug = publication.project, publication.post.slug
    delivery = project.config.delivery
    addresser = Addresser(project.config, signer)
    with Store.open(project.config.store_url()) as store:
        ledger = Ledger(store)
        with provider.cls(project.config, addresser, provider.settings) as sender:
            if resend_in_flight:
                settle_delivered(ledger, slug, sender)
                ledger.release_in_flight(slug)
            ledger.plan(slug, publication.goals)
            yield partial(send_rendered, publication.rendered, ledger, sender, addresser,
                          max_attempts=delivery.max_attempts,
                          backoff_base=delivery.backoff_base,
                          backoff_max=delivery.backoff_max,
                          retry_after_max=delivery.retry_after_max)


def settle_delivered(ledger: Any, post: str, sender: Any) -> None:
    """Mark sent the in-flight rows the provider shows were delivered (the outbox's files in
    new/), so that resending in-flight rows resends only the others."""
    found = sender.already_delivered(post, ledger.in_flight_ids(post))
    if found:
        ledger.record(post, [Receipt(sid, ACCEPTED, provider_id=unique)
                             for sid, unique in found.items()], {}, 0, 0, time.time())


def settle(publication: Publication, provider: ChosenProvider, outcome: Outcome) -> Sent:
    """After a send: the ledger per segment, the archive rebuilt, and why the run stopped."""
    project = publication.project
    with Store.open(project.config.store_url()) as store:
        table = Ledger(store).report(publication.post.slug)
    segments = tuple((goal, table.get(goal, Counter())) for goal in publication.goals)
    return Sent(outcome, segments, rebuild_archive(project),
                stopped_early(publication, provider, outcome))


def stopped_early(publication: Publication, provider: ChosenProvider,
                  outcome: Outcome) -> Finding | None:
    """The line a publish stopped by a too-long Retry-After ends with (None if it was not)."""
    if outcome.resume_at is None or outcome.wait_asked is None:
        return None
    ceiling = publication.project.config.delivery.retry_after_max
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(math.ceil(outcome.resume_at)))
    label = getattr(provider.cls, "label", "") or provider.name
    return Finding(publication.post.source.display, None,
                   f"stopped: {label} asked to wait {math.ceil(outcome.wait_asked)} s, longer "
                   f"than [delivery] retry_after_max ({ceiling:g} s); the rest is not sent "
                   f"yet: run publish again after {when}")


def in_flight_line(count: int, item: str, provider: str = "") -> str:
    """The one wording for rows left in flight (a call the provider may have taken, with no
    answer read) and the command that resolves them; `provider` names who was called."""
    what = f"{count} message{'' if count == 1 else 's'} {'is' if count == 1 else 'are'}"
    place = f"{provider}: " if provider else f"{item}: "
    # A sequence step is sent only by `publish --due`, which resends what it finds in flight.
    command = ("runletter publish --due --resend-in-flight" if "/" in item else
               f"runletter publish {item} --resend-in-flight")
    resolve = (f"run '{command}' once you have checked they did not arrive (readers who got "
               "one would get a second)")
    return f"{place}{what} in flight (sent, but no answer was read); {resolve}"


def rebuild_archive(project: Project) -> Finding | None:
    """Rebuild the archive; another post's mistake is returned, not raised, so it cannot
    fail a send that has finished."""
    try:
        SiteBuilder(project.config, project.goals, project.catalogue).build(
            project.resolve_all())
    except RunletterError as exc:
        return exc.findings[0]
    return None
