"""The `runletter` command: each verb parses its options, calls its service in
`publisher.commands` (which returns data) and prints, in the voice of `console`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from publisher.cli.console import (
    VoicedGroup,
    plural,
    progress_notice,
    report,
    summarize,
    table,
    tally,
)
from publisher.cli.unbounce import unbounce_command
from publisher.errors import RunletterError, display_path
from publisher.project import Project, open_project

if TYPE_CHECKING:
    from publisher.commands.publish import ChosenProvider, Planned, Publication
    from publisher.delivery.tokens import Signer

# Verbs that are subsystems of their own, imported only when used (keeps `build` quick).
LAZY_COMMANDS = {
    "preview": "publisher.preview:preview_command",
    "serve": "publisher.serve:serve_command",
    "due": "publisher.cli.due:due_command",
    "report": "publisher.cli.due:report_command",
    "db": "publisher.cli.db:db_command",
}


class Runletter(VoicedGroup):
    """`runletter`: every verb in the CLI's voice, preview and serve loaded only when used."""

    lazy = LAZY_COMMANDS


def project_here() -> Project:
    """The project at or above the current folder."""
    return open_project(Path.cwd())


@click.group(cls=Runletter, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runletter")
def main() -> None:
    """Runletter: newsletter-as-code for running coaches.

    Markdown posts and an exercise catalogue in; one email edition per runner goal,
    a web archive and feeds out.
    """


@main.command()
@click.option("--drafts", is_flag=True, help="Include draft posts in the archive.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Write somewhere other than the configured site/ folder.")
def build(drafts: bool, out: Path | None) -> None:
    """Build the web archive (posts, exercises, goals, feeds) into site/."""
    from publisher.commands.build import build as build_site

    built = build_site(open_project(Path.cwd(), cache=True), drafts, out)
    click.echo(f"built {built.site}/: {plural(built.posts, 'post')}, "
               f"{plural(built.exercises, 'exercise')}, {plural(built.goals, 'goal')} "
               f"({plural(built.written, 'file')} written)")


@main.command()
@click.argument("post")
@click.option("--goal", "goal_slug", help="Which goal's edition (default: general, "
              "or the post's first goal).")
@click.option("--text", is_flag=True, help="Print the plain-text part instead of the HTML.")
def render(post: str, goal_slug: str | None, text: bool) -> None:
    """Print one edition of POST (a slug or a path) to stdout."""
    from publisher.commands.render import render as render_edition
    from publisher.commands.render import shown

    sys.stdout.write(shown(render_edition(project_here(), post, goal_slug), text))


@main.command()
@click.argument("posts", nargs=-1)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.option("--links", is_flag=True, help="Also ask every external link (needs network).")
def check(posts: tuple[str, ...], strict: bool, links: bool) -> None:
    """Check every edition of POSTS (default: all posts) before sending."""
    from publisher.commands.check import check as check_posts

    checked = check_posts(project_here(), posts, links)
    report(checked.findings)
    steps = f" and {plural(checked.steps, 'sequence step')}" if checked.steps else ""
    click.echo(f"checked {plural(checked.posts, 'post')}{steps}: {tally(checked.findings)}",
               err=True)
    if checked.errors or (strict and checked.warnings):
        sys.exit(1)


@main.group()
def new() -> None:
    """Scaffold a post or an exercise with its front matter filled in."""


@new.command("post")
@click.argument("title")
def new_post_command(title: str) -> None:
    """Create content/posts/<date>-<slug>.md as a draft."""
    from publisher.commands.new import new_post

    project = project_here()
    click.echo(f"created {display_path(new_post(project.config, title), project.root)}")


@new.command("exercise")
@click.argument("name")
def new_exercise_command(name: str) -> None:
    """Create content/exercises/<slug>.md."""
    from publisher.commands.new import new_exercise

    project = project_here()
    click.echo(f"created {display_path(new_exercise(project.config, name), project.root)}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Start a new newsletter in DIRECTORY with a minimal example."""
    from publisher.commands.init import NEXT_STEPS, init_project

    init_project(directory)
    click.echo(f"created a newsletter in {directory}/ — next:")
    width = max(len(step) for step, _ in NEXT_STEPS)
    for line in (f"cd {directory}", *(f"{s:<{width}}  # {why}" for s, why in NEXT_STEPS)):
        click.echo(f"  {line}")


@main.group(commands=[unbounce_command])
def subscribers() -> None:
    """Manage readers: import, add, remove, list, export, unbounce."""


@subscribers.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--from", "source", default="auto", show_default=True, metavar="FORMAT",
              help="Which tool wrote the file: runletter, mailchimp, substack, ghost, "
              "listmonk, buttondown or kit; auto reads it from the header.")
@click.option("--status", type=click.Choice(["pending", "active", "unsubscribed", "bounced",
                                             "complained"]),
              help="Status of rows with none of their own (e.g. bounced for a suppression "
              "list); it never makes a row more permissive than its file says.")
@click.option("--goal", help="Goal (slug or label) of rows without one (default: general).")
@click.option("--map", "maps", multiple=True, metavar='"COLUMN=field"',
              help="Read COLUMN as email, first_name, name (first word kept), goal, tags, "
              "status, race_date, race_name or timezone; repeatable.")
@click.option("--dry-run", is_flag=True, help="Show the format, the column mapping and the "
              "counts per status and goal, with every row error; write nothing.")
@click.option("--enrol", is_flag=True, help="Enrol them in signup sequences from now on.")
def subscribers_import(csv_file: Path, source: str, status: str | None, goal: str | None,
                       maps: tuple[str, ...], dry_run: bool, enrol: bool) -> None:
    """Import readers from a CSV export (Runletter's own, or Mailchimp, Substack, Ghost,
    listmonk, Buttondown or Kit) in one transaction."""
    from publisher.commands.subscribers import import_readers

    result = import_readers(project_here(), csv_file, source, status, goal, maps, dry_run, enrol)
    click.echo(result.format_line())
    if dry_run:
        for line in ["columns:", *result.mapping_lines(), *result.count_lines()]:
            click.echo(line)
    if result.findings:
        summarize(result.findings)
    if line := result.enrol_line():
        click.echo(line)
    click.echo(result.summary(str(csv_file)))
    if result.skipped:
        sys.exit(1)


@subscribers.command("add")
@click.argument("email")
@click.option("--goal", default="general", show_default=True, help="The reader's goal.")
@click.option("--name", "first_name", default="", help="First name, for the greeting.")
@click.option("--tags", default="", help="Tags, separated by ';'.")
@click.option("--race-date", help="Date of the reader's race, YYYY-MM-DD.")
@click.option("--race-name", default="", help="Name of the reader's race.")
@click.option("--timezone", default="", help="IANA time zone, e.g. Europe/Madrid (default: "
              "[schedule] timezone).")
def subscribers_add(email: str, goal: str, first_name: str, tags: str, **race: str) -> None:
    """Add one active reader (consent source: cli)."""
    from publisher.commands.subscribers import add_reader

    reader = add_reader(project_here(), email, goal, first_name, tags, **race)
    click.echo(f"added {reader.email} ({reader.goal})")


@subscribers.command("remove")
@click.argument("email")
def subscribers_remove(email: str) -> None:
    """Delete a reader and their delivery history (the audit trail keeps the removal)."""
    from publisher.commands.subscribers import remove_reader

    remove_reader(project_here(), email)
    click.echo(f"removed {email}")


@subscribers.command("list")
@click.option("--goal", help="Only this goal.")
@click.option("--status", type=click.Choice(["pending", "active", "unsubscribed", "bounced",
                                             "complained"]), help="Only this status.")
def subscribers_list(goal: str | None, status: str | None) -> None:
    """List readers, one per line: email, goal, status, name."""
    from publisher.commands.subscribers import list_readers

    for reader in list_readers(project_here(), goal, status):
        click.echo(f"{reader.email}\t{reader.goal}\t{reader.status}\t{reader.first_name}")


@subscribers.command("export")
@click.option("--goal", help="Only this goal.")
@click.option("--status", help="Only this status.")
def subscribers_export(goal: str | None, status: str | None) -> None:
    """Write readers as CSV to stdout."""
    from publisher.commands.subscribers import export_readers

    export_readers(project_here(), sys.stdout, goal, status)


@main.command()
def audience() -> None:
    """Count active readers per goal."""
    from publisher.commands.audience import audience as count_audience

    counted = count_audience(project_here())
    rows = [["segment", "active readers"], *([slug, str(n)] for slug, n in counted.segments)]
    rows += [[f"{slug} (not in goals.toml)", str(n)] for slug, n in counted.unlisted]
    table([*rows, ["total", str(counted.total)]])


@main.command()
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
    from publisher.commands import publish as publishing

    if due or post is None:
        if not due or post or test_to:
            raise click.UsageError("give a POST to publish, or --due alone (with --now, "
                                   "--dry-run, --yes, --provider, --resend-in-flight)")
        from publisher.cli.due import publish_due

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
        publishing.send_test_copy(publication, provider, _signer(project, provider), test_to,
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


def _signer(project: Project, provider: ChosenProvider) -> Signer:
    """The signer of reader links, telling the author when a secret was generated."""
    from publisher.commands.publish import sign_links

    signer, told = sign_links(project, provider)
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
    from publisher.commands.publish import SENT_STATES, in_flight_line, sending, settle

    signer = _signer(publication.project, provider)
    label = f"sending via {provider.name}"
    with sending(publication, provider, signer, resend_in_flight) as send, click.progressbar(
            length=to_send, label=label, file=sys.stderr) as bar:
        outcome = send(progress=bar.update, notice=progress_notice(bar, label))
    sent = settle(publication, provider, outcome)
    table([["segment", *SENT_STATES],
           *([goal, *(str(states.get(s, 0)) for s in SENT_STATES)]
             for goal, states in sent.segments)])
    click.echo(f"sent {plural(sum(outcome.sent.values()), 'message')} in "
               f"{plural(outcome.batches, 'batch')}")
    if sent.archive_problem:
        click.echo(f"warning: the archive was not rebuilt ({sent.archive_problem}); fix it and "
                   "run 'runletter build'", err=True)
    if sent.stopped:
        raise RunletterError(sent.stopped)
    if in_flight := sum(outcome.in_flight.values()):
        raise RunletterError(in_flight_line(in_flight, publication.post.slug, provider.name))
    if failed := sum(outcome.failed.values()):
        tries = plural(publication.project.config.delivery.max_attempts, "try")
        raise RunletterError(f"{plural(failed, 'delivery')} failed after {tries}; run "
                             "publish again to retry them")



@main.group("layouts")
def layouts() -> None:
    """List the built-in layouts, or copy one into layouts/ to edit.

    A file in layouts/ replaces the built-in one of the same name; a layout that starts with
    {% extends "!builtin/email/base.mjml.j2" %} overrides only the blocks it names.
    """


@layouts.command("list")
def layouts_list() -> None:
    """Every built-in layout; the ones this newsletter overrides are marked."""
    from publisher.commands.layouts import list_layouts

    for layout in list_layouts(Path.cwd()):
        click.echo(layout.name + (f"  (overridden by {layout.override})" if layout.override
                                  else ""))


@layouts.command("eject")
@click.argument("name")
@click.option("--force", is_flag=True, help="Replace an existing override with the built-in.")
def layouts_eject(name: str, force: bool) -> None:
    """Copy the built-in layout NAME (e.g. email/partials/footer.mjml.j2) into layouts/."""
    from publisher.commands.layouts import eject_layout

    path = eject_layout(Path.cwd(), name, force)
    click.echo(f"created {path} (a copy of the built-in, to edit)")


if __name__ == "__main__":  # pragma: no cover
    main()
