"""The sending verbs: `publish` (a post, a test copy, or `--due`), `due` and `report`
(the click wiring and printing; the services are in `commands/publish.py`, `commands/due.py`
and `commands/report.py`)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from publisher import clock
from publisher.cli import project_here
from publisher.cli.console import plural, progress_notice, report, table, tally
from publisher.commands import due as dueing
from publisher.commands import publish as publishing
from publisher.commands.due import find_step, outlook, reader_plan, scheduled, sequence_report
from publisher.commands.report import ledger_report, step_report
from publisher.errors import RunletterError
from publisher.project import Project
from publisher.store.tables import STATES

if TYPE_CHECKING:
    from publisher.commands.publish import ChosenProvider, Planned, Publication
    from publisher.delivery.tokens import Signer


@click.command("publish")
@click.argument("post", required=False)
@click.option("--due", is_flag=True, help="Send every scheduled post and sequence step due "
              "now (for cron or a timer; overlapping runs are safe).")
@click.option("--now", "now_text", metavar="TIME", help="With --due: stand the run at this "
              "moment, e.g. 2027-01-10T05:30:00Z.")
@click.option("--provider", "provider_name", help="Override [delivery] provider.")
@click.option("--dry-run", is_flag=True, help="Show the plan per segment; send nothing.")
@click.option("--to", "test_to", metavar="EMAIL", help="Send one test copy to EMAIL, "
              "outside the ledger.")
@click.option("--goal", "test_goal", help="With --to: which goal's edition (default: the "
              "post's first goal).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--resend-in-flight", is_flag=True, help="Send again to readers whose batch "
              "was in flight when an earlier publish stopped (they may get two copies); "
              "with --due, of every item found in flight.")
def publish(post: str | None, due: bool, now_text: str | None, provider_name: str | None,
            dry_run: bool, test_to: str | None, test_goal: str | None, yes: bool,
            resend_in_flight: bool) -> None:
    """Send POST to every active reader in its audience, each their goal's edition
    (or, with --due, every scheduled post and sequence step that is due)."""
    if due or post is None:
        if not due or post or test_to:
            raise click.UsageError("give a POST to publish, or --due alone (with --now, "
                                   "--dry-run, --yes, --provider, --resend-in-flight)")
        return publish_due(provider_name, dry_run, yes, now_text, resend_in_flight)
    if now_text:
        raise click.UsageError("--now goes with --due")

    project = project_here()
    publication = publishing.prepare(project, post, test_to, test_goal)
    _show_findings(publication)
    provider = publishing.choose_provider(project, provider_name)
    for warning in provider.unknown_env:
        click.echo(f"warning: {warning}", err=True)
    if test_to:
        goal = publishing.copy_goal(publication, test_to, test_goal)
        publishing.send_test_copy(publication, provider, signer_for(project, provider), test_to,
                                  goal)
        click.echo(f"sent a test copy of the {goal} edition to {test_to} via {provider.name}")
        return
    planned = publishing.plan(publication, resend_in_flight)
    _show_plan(publication, planned, resend_in_flight)
    if dry_run or planned.to_send == 0:
        click.echo(f"dry run: would send {plural(planned.to_send, 'message')} via "
                   f"{provider.name}; nothing sent" if dry_run else _nothing_to_send(planned))
        return
    if not yes:
        click.confirm(f"Send '{publication.post.subject}' to "
                      f"{plural(planned.to_send, 'reader')} via {provider.name}?", abort=True)
    _send(publication, provider, planned.to_send, resend_in_flight)


def _show_findings(publication: Publication) -> None:
    """What checking the editions found; any error stops the publish here."""
    findings = publication.findings
    report(findings)
    if publication.errors:
        click.echo(f"not sent: {tally(findings)} found by 'runletter check'; fix the errors "
                   "first", err=True)
        sys.exit(1)
    if findings:
        click.echo(tally(findings), err=True)


def signer_for(project: Project, provider: ChosenProvider) -> Signer:
    """The signer of reader links, telling the author when a secret was generated."""
    signer, told = publishing.sign_links(project, provider)
    if told:
        click.echo(f"note: {told}", err=True)
    return signer


def _show_plan(publication: Publication, planned: Planned, resend_in_flight: bool) -> None:
    """The plan per segment, and what the author should know before saying yes."""
    plan = planned.plan
    table([["segment", "to send", "already sent"],
           *([g, str(plan.to_send[g]), str(plan.done[g])] for g in publication.goals)])
    goals_file = publication.project.config.goals_path.name
    for slug, count in plan.unmatched.items():
        click.echo(f"warning: {plural(count, 'active reader')} "
                   f"{'has' if count == 1 else 'have'} the goal '{slug}', which is not in "
                   f"{goals_file}; they get nothing", err=True)
    if plan.in_flight:
        verb = "will be sent again" if resend_in_flight else "will NOT be sent again"
        click.echo(f"warning: {plural(plan.in_flight, 'delivery')} "
                   f"{'was' if plan.in_flight == 1 else 'were'} in flight (another publish "
                   f"may be sending them now, or an earlier one stopped); they {verb}"
                   + ("" if resend_in_flight else " (use --resend-in-flight to resend)"),
                   err=True)


def _nothing_to_send(planned: Planned) -> str:
    """Why a publish sends nothing: nobody to send to, or everybody has it."""
    if planned.nobody:
        return (f"nothing to send: no active readers in the post's audience "
                f"({', '.join(planned.plan.to_send)}); 'runletter subscribers import FILE' "
                "adds them")
    return "nothing to send: every reader in the audience already has this post"


def _send(publication: Publication, provider: ChosenProvider, to_send: int,
          resend_in_flight: bool) -> None:
    """Send with a progress bar, then show the ledger per segment and what went wrong."""
    signer = signer_for(publication.project, provider)
    label = f"sending via {provider.name}"
    with publishing.sending(publication, provider, signer, resend_in_flight) as send, \
            click.progressbar(length=to_send, label=label, file=sys.stderr) as bar:
        outcome = send(progress=bar.update, notice=progress_notice(bar, label))
    sent = publishing.settle(publication, provider, outcome)
    table([["segment", *publishing.SENT_STATES],
           *([goal, *(str(states.get(s, 0)) for s in publishing.SENT_STATES)]
             for goal, states in sent.segments)])
    click.echo(f"sent {plural(sum(outcome.sent.values()), 'message')} in "
               f"{plural(outcome.batches, 'batch')}")
    if sent.archive_problem:
        click.echo(f"warning: the archive was not rebuilt ({sent.archive_problem}); fix it and "
                   "run 'runletter build'", err=True)
    if sent.stopped:
        raise RunletterError(sent.stopped)
    if in_flight := sum(outcome.in_flight.values()):
        raise RunletterError(publishing.in_flight_line(in_flight, publication.post.slug,
                                                       provider.name))
    if failed := sum(outcome.failed.values()):
        tries = plural(publication.project.config.delivery.max_attempts, "try")
        raise RunletterError(f"{plural(failed, 'delivery')} failed after {tries}; run "
                             "publish again to retry them")


def moment(text: str | None) -> dt.datetime:
    """--now as an aware UTC instant (the clock when not given); a bad value is a usage line."""
    if text is None:
        return clock.now()
    try:
        return clock.parse_instant(text)
    except ValueError as exc:
        raise RunletterError(f"--now {exc}") from None


def utc_minute(at: dt.datetime) -> str:
    """An instant as the CLI prints it: to the minute, in UTC."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@click.command("due")
@click.option("--now", "now_text", metavar="TIME", help="Look from this moment instead of the "
              "clock, e.g. 2027-01-10T05:30:00Z.")
@click.option("--days", default=14, show_default=True, type=click.IntRange(0, 3660),
              help="How many days ahead to look.")
@click.option("--reader", "email", metavar="EMAIL", help="One reader's plan: each upcoming "
              "item with its subject and their local date and time.")
def due_command(now_text: str | None, days: int, email: str | None) -> None:
    """Show what is due now and in the next days, per scheduled post and sequence step."""
    at = moment(now_text)
    project = project_here()
    with clock.pinned(at):
        if email:
            explicit = click.get_current_context().get_parameter_source("days")
            given = days if explicit == click.core.ParameterSource.COMMANDLINE else None
            _print_reader(reader_plan(project, email, at, given))
            return
        seen = outlook(project, at, days)
    click.echo(f"due at {utc_minute(at)}")
    left_out(seen.unreadable)
    if seen.now:
        table([["item", "send now", "skip (late)"],
               *([k, str(s), str(k_)] for k, (s, k_) in sorted(seen.now.items()))])
    else:
        click.echo("nothing is due now")
    click.echo(f"next {plural(days, 'day')} (dates in [schedule] timezone):")
    rows = [[day.isoformat(), item, str(n)] for item, days_ in seen.ahead.items()
            for day, n in days_.items()]
    if rows:
        table([["date", "item", "readers"], *sorted(rows)])
    else:
        click.echo("nothing")
    for step, count in sorted(seen.waiting.items()):
        click.echo(f"waiting at the gate of {step}: {plural(count, 'reader')}")


def left_out(unreadable: dict[int, str]) -> None:
    """Name each reader a run left out (to stderr) and count them in its summary."""
    if not unreadable:
        return
    for sid, why in sorted(unreadable.items()):
        click.echo(f"warning: reader #{sid} left out: their dates cannot be computed ({why}); "
                   "import their row again with a race_date from "
                   f"{clock.DATE_RANGE}", err=True)
    click.echo(f"left out {plural(len(unreadable), 'reader')} whose dates cannot be computed "
               f"(#{', #'.join(str(sid) for sid in sorted(unreadable))})")


def _print_reader(plan) -> None:
    tz = ZoneInfo(plan.zone)
    head = f"{plan.email} ({plan.zone})" + (f", {plan.race}" if plan.race else "")
    click.echo(head)
    click.echo(f"signed up: {plan.signed_up or 'unknown (no consent time was given)'}")
    if not plan.upcoming:
        click.echo("nothing ahead")
        return
    rows = [["date", "time", "item", "subject"]]
    for u in plan.upcoming:
        if u.at is None:
            rows.append(["waiting", "ready", u.item, u.subject])
        else:
            local = u.at.astimezone(tz)
            rows.append([local.strftime("%Y-%m-%d"), local.strftime("%H:%M"), u.item, u.subject])
    table(rows)


def publish_due(provider_name: str | None, dry_run: bool, yes: bool,
                now_text: str | None, resend_in_flight: bool = False) -> None:
    """`publish --due`: send every scheduled post and sequence step due at that moment
    (and, with `resend_in_flight`, the rows an earlier run left in flight, once more)."""
    at = moment(now_text)
    project = project_here()
    with clock.pinned(at):
        run = dueing.decide(project, at, resend_in_flight)
        provider = publishing.choose_provider(project, provider_name)
        for item in run.items:
            report(item.findings)
        rows = [[i.item, str(i.send), str(i.skip), "held: check errors" if i.errors else ""]
                for i in run.items]
        click.echo(f"due at {utc_minute(at)}")
        if rows:
            table([["item", "send", "skip (late)", ""], *rows])
        left_out(run.decision.unreadable)
        _warn_in_flight(run, resend_in_flight, dry_run)
        if dry_run:
            click.echo(f"dry run: would send {plural(run.to_send, 'message')} via "
                       f"{provider.name}; nothing written")
            return _held(run)
        if run.to_send == 0:
            dueing.record_only(run, project)
            click.echo("nothing to send")
            return _held(run)
        if not yes:
            click.confirm(f"Send {plural(run.to_send, 'message')} via {provider.name}?",
                          abort=True)
        signer = signer_for(project, provider)
        label = f"sending via {provider.name}"
        with dueing.sending(run, project, provider, signer) as send, click.progressbar(
                length=run.to_send, label=label, file=sys.stderr) as bar:
            done = send(progress=bar.update, notice=progress_notice(bar, label))
        sent = sum(sum(o.sent.values()) for _, o in done)
        failed = sum(sum(o.failed.values()) for _, o in done)
        click.echo(f"sent {plural(sent, 'message')}"
                   + (f"; {plural(failed, 'delivery')} failed (the next run retries them)"
                      if failed else ""))
        posts_sent = any("/" not in item for item, _ in done)
        if posts_sent and (problem := publishing.rebuild_archive(project)):
            click.echo(f"warning: the archive was not rebuilt ({problem})", err=True)
        doubt = [(item, n) for item, o in done if (n := sum(o.in_flight.values()))]
        for item, count in doubt:
            click.echo(f"error: {publishing.in_flight_line(count, item, provider.name)}", err=True)
        if doubt:
            _held(run)
            sys.exit(1)
    return _held(run)


def _warn_in_flight(run, resend_in_flight: bool, dry_run: bool) -> None:
    """A line per item with rows an earlier run left in flight: whether this run sends them
    again, and how to when it does not."""
    for item, count in run.in_flight:
        head = (f"warning: {plural(count, 'delivery')} of {item} "
                f"{'was' if count == 1 else 'were'} in flight (another run may be sending "
                "them now, or an earlier one stopped); ")
        if resend_in_flight and item not in run.held:
            click.echo(head + ("they would be sent again" if dry_run else
                               "they are sent again in this run")
                       + " (readers who got one get a second)", err=True)
            continue
        how = ("runletter publish --due --resend-in-flight" if "/" in item else
               f"runletter publish {item} --resend-in-flight")
        click.echo(head + f"they are not sent again ('runletter report {item}' shows them; "
                   f"'{how}' resends them)", err=True)


def _held(run) -> None:
    if run.held:
        errors = [f for i in run.items for f in i.errors]
        click.echo(f"not sent: {', '.join(run.held)} ({tally(errors)}); fix them and the "
                   "next run sends them", err=True)
        sys.exit(1)


@click.command("report")
@click.argument("name", metavar="POST")
def report_command(name: str) -> None:
    """Show the ledger of POST per segment and state; `report SEQUENCE` shows each step's
    counts, `report SEQUENCE/STEP` one step's ledger."""
    if report_sequence(name):
        return
    _ledger_table(ledger_report(project_here(), name))


def _ledger_table(ledger) -> None:
    if not ledger.segments:
        click.echo(f"{ledger.post}: not published yet")
        return
    rows = [["segment", *STATES, "total"]]
    for goal, states in ledger.segments:
        rows.append([goal, *(str(states.get(s, 0)) for s in STATES), str(sum(states.values()))])
    totals = [sum(t.get(s, 0) for _, t in ledger.segments) for s in STATES]
    rows.append(["total", *(str(n) for n in totals), str(sum(totals))])
    table(rows)
    if doubt := totals[STATES.index("in-flight")]:
        click.echo(f"warning: {publishing.in_flight_line(doubt, ledger.post)}", err=True)


def report_sequence(name: str) -> bool:
    """`report <sequence>` or `report <sequence>/<step>`; False when NAME is neither."""
    if name.endswith(".md") and Path(name).exists():
        return False  # a post's path
    project = project_here()
    folder = project.config.content_dir / "sequences" / name.strip("/").split("/")[0]
    if "/" not in name.strip("/") and not folder.is_dir():
        return False
    plan = scheduled(project, posts=False)
    if "/" not in name.strip("/"):
        counted = sequence_report(project, name)
        columns = ("sent", "skipped", "planned", "in-flight", "failed", "rejected")
        table([["step", *columns, "waiting at gate"],
               *([key, *(str(states.get(c, 0)) for c in columns), str(waiting)]
                 for key, states, waiting in counted.steps)])
        return True
    _ledger_table(step_report(project, find_step(plan, name)))
    return True
