"""The time verbs' click wiring and printing: `runletter due`, `publish --due` and the
sequence forms of `report` (the services are in `commands/due.py`)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from publisher import clock
from publisher.cli.console import plural, progress_notice, report, table, tally
from publisher.errors import RunletterError
from publisher.project import open_project


def moment(text: str | None) -> dt.datetime:
    """--now as an aware UTC instant (the clock when not given); a bad value is a usage line."""
    from publisher import clock

    if text is None:
        return clock.now()
    try:
        return clock.parse_instant(text)
    except ValueError as exc:
        raise RunletterError(f"--now {exc}") from None


def shown(at: dt.datetime) -> str:
    """An instant as the CLI prints it (UTC)."""
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
    from publisher import clock
    from publisher.commands.due import outlook, reader_plan

    at = moment(now_text)
    project = open_project(Path.cwd())
    with clock.pinned(at):
        if email:
            explicit = click.get_current_context().get_parameter_source("days")
            given = days if explicit == click.core.ParameterSource.COMMANDLINE else None
            _print_reader(reader_plan(project, email, at, given))
            return
        seen = outlook(project, at, days)
    click.echo(f"due at {shown(at)}")
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
    from zoneinfo import ZoneInfo

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
    from publisher import clock
    from publisher.cli import _signer
    from publisher.commands import due as dueing
    from publisher.commands.publish import choose_provider, in_flight_line, rebuild_archive

    at = moment(now_text)
    project = open_project(Path.cwd())
    with clock.pinned(at):
        run = dueing.decide(project, at, resend_in_flight)
        provider = choose_provider(project, provider_name)
        for item in run.items:
            report(item.findings)
        rows = [[i.item, str(i.send), str(i.skip), "held: check errors" if i.errors else ""]
                for i in run.items]
        click.echo(f"due at {shown(at)}")
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
        signer = _signer(project, provider)
        label = f"sending via {provider.name}"
        with dueing.sending(run, project, provider, signer) as send, click.progressbar(
                length=run.to_send, label=label, file=sys.stderr) as bar:
            done = send(progress=bar.update, notice=progress_notice(bar, label))
        sent = sum(sum(o.sent.values()) for _, o in done)
        failed = sum(sum(o.failed.values()) for _, o in done)
        click.echo(f"sent {plural(sent, 'message')}"
                   + (f"; {plural(failed, 'delivery')} failed (the next run retries them)"
                      if failed else ""))
        if any("/" not in item for item, _ in done) and (problem := rebuild_archive(project)):
            click.echo(f"warning: the archive was not rebuilt ({problem})", err=True)
        doubt = [(item, n) for item, o in done if (n := sum(o.in_flight.values()))]
        for item, count in doubt:
            click.echo(f"error: {in_flight_line(count, item, provider.name)}", err=True)
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
    from publisher.commands.report import ledger_report

    if report_sequence(name):
        return
    _ledger_table(ledger_report(open_project(Path.cwd()), name))


def _ledger_table(ledger) -> None:
    from publisher.commands.publish import in_flight_line
    from publisher.store.ledger import STATES

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
        click.echo(f"warning: {in_flight_line(doubt, ledger.post)}", err=True)


def report_sequence(name: str) -> bool:
    """`report <sequence>` or `report <sequence>/<step>`; False when NAME is neither."""
    from publisher.commands.due import find_step, scheduled, sequence_report
    from publisher.commands.report import step_report

    if name.endswith(".md") and Path(name).exists():
        return False  # a post's path
    project = open_project(Path.cwd())
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
