"""The `runletter` command: click wiring and printing over the services in commands/.

Each verb parses its options, calls `publisher.commands.<verb>` (which returns data) and
prints; user mistakes print as `path:line: level: message` and one summary line, never a
traceback.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .commands.subscribers import open_store
from .console import fail, plural, report, table, tally
from .errors import Finding, RunletterError
from .project import Project, open_project

if TYPE_CHECKING:
    from .deliver import Outcome

# Verbs that are subsystems of their own, imported only when used (keeps `build` quick).
LAZY_COMMANDS = {
    "preview": "publisher.preview:preview_command",
    "serve": "publisher.serve:serve_command",
}


class Runletter(click.Group):
    """Prints RunletterError findings and their summary line and exits 1, with no traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            import importlib

            module, _, attr = LAZY_COMMANDS[name].partition(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RunletterError as exc:
            fail(exc.findings)
            ctx.exit(1)


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
    from .commands.build import build as build_site

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
    from .commands.render import render as render_edition
    from .commands.render import shown

    sys.stdout.write(shown(render_edition(project_here(), post, goal_slug), text))


@main.command()
@click.argument("posts", nargs=-1)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.option("--links", is_flag=True, help="Also ask every external link (needs network).")
def check(posts: tuple[str, ...], strict: bool, links: bool) -> None:
    """Check every edition of POSTS (default: all posts) before sending."""
    from .commands.check import check as check_posts

    checked = check_posts(project_here(), posts, links)
    report(checked.findings)
    click.echo(f"checked {plural(checked.posts, 'post')}: {tally(checked.findings)}", err=True)
    if checked.errors or (strict and checked.warnings):
        sys.exit(1)


@main.group()
def new() -> None:
    """Scaffold a post or an exercise with its front matter filled in."""


@new.command("post")
@click.argument("title")
def new_post_command(title: str) -> None:
    """Create content/posts/<date>-<slug>.md as a draft."""
    from .commands.new import new_post
    from .errors import display_path

    project = project_here()
    click.echo(f"created {display_path(new_post(project.config, title), project.root)}")


@new.command("exercise")
@click.argument("name")
def new_exercise_command(name: str) -> None:
    """Create content/exercises/<slug>.md."""
    from .commands.new import new_exercise
    from .errors import display_path

    project = project_here()
    click.echo(f"created {display_path(new_exercise(project.config, name), project.root)}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Start a new newsletter in DIRECTORY with a minimal example."""
    from .commands.init import NEXT_STEPS, init_project

    init_project(directory)
    click.echo(f"created a newsletter in {directory}/ — next:")
    width = max(len(step) for step, _ in NEXT_STEPS)
    for line in (f"cd {directory}", *(f"{s:<{width}}  # {why}" for s, why in NEXT_STEPS)):
        click.echo(f"  {line}")


@main.group()
def subscribers() -> None:
    """Manage readers: import, add, remove, list, export."""


@subscribers.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path))
def subscribers_import(csv_file: Path) -> None:
    """Import readers from CSV (email, first_name, goal, tags[, status]) in one transaction."""
    from .commands.subscribers import import_readers

    result = import_readers(project_here(), csv_file)
    if result.findings:
        fail(result.findings)
    click.echo(f"imported {csv_file}: {result.added} added, {result.updated} updated, "
               f"{result.unchanged} unchanged, {result.skipped} skipped")
    if result.skipped:
        sys.exit(1)


@subscribers.command("add")
@click.argument("email")
@click.option("--goal", default="general", show_default=True, help="The reader's goal.")
@click.option("--name", "first_name", default="", help="First name, for the greeting.")
@click.option("--tags", default="", help="Tags, separated by ';'.")
def subscribers_add(email: str, goal: str, first_name: str, tags: str) -> None:
    """Add one active reader (consent source: cli)."""
    from .commands.subscribers import add_reader

    reader = add_reader(project_here(), email, goal, first_name, tags)
    click.echo(f"added {reader.email} ({reader.goal})")


@subscribers.command("remove")
@click.argument("email")
def subscribers_remove(email: str) -> None:
    """Delete a reader and their delivery history (the audit trail keeps the removal)."""
    from .commands.subscribers import remove_reader

    remove_reader(project_here(), email)
    click.echo(f"removed {email}")


@subscribers.command("list")
@click.option("--goal", help="Only this goal.")
@click.option("--status", type=click.Choice(["pending", "active", "unsubscribed", "bounced",
                                             "complained"]), help="Only this status.")
def subscribers_list(goal: str | None, status: str | None) -> None:
    """List readers, one per line: email, goal, status, name."""
    from .commands.subscribers import list_readers

    for reader in list_readers(project_here(), goal, status):
        click.echo(f"{reader.email}\t{reader.goal}\t{reader.status}\t{reader.first_name}")


@subscribers.command("export")
@click.option("--goal", help="Only this goal.")
@click.option("--status", help="Only this status.")
def subscribers_export(goal: str | None, status: str | None) -> None:
    """Write readers as CSV to stdout."""
    from .commands.subscribers import export_readers

    export_readers(project_here(), sys.stdout, goal, status)


@main.command()
def audience() -> None:
    """Count active readers per goal."""
    from .commands.audience import audience as count_audience

    counted = count_audience(project_here())
    rows = [["segment", "active readers"], *([slug, str(n)] for slug, n in counted.segments)]
    rows += [[f"{slug} (not in goals.toml)", str(n)] for slug, n in counted.unlisted]
    table([*rows, ["total", str(counted.total)]])


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def _signer_for(project: Project, provider_cls) -> object:
    """The token signer; only the outbox may run on a generated, git-ignored secret."""
    import os

    from .tokens import SECRET_ENV, Signer, load_secret

    if provider_cls.needs_secret_env and not os.environ.get(SECRET_ENV):
        raise RunletterError(
            f"{SECRET_ENV} is not set: the '{provider_cls.name}' provider sends real mail, "
            "so reader links must be signed with your own secret; set it with "
            f"export {SECRET_ENV}=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    secret, told = load_secret(project.root, create=True)
    if told:
        click.echo(f"note: {told}", err=True)
    return Signer(secret)


@main.command()
@click.argument("post")
@click.option("--provider", "provider_name", help="Override [delivery] provider.")
@click.option("--dry-run", is_flag=True, help="Show the plan per segment; send nothing.")
@click.option("--to", "test_to", metavar="EMAIL", help="Send one test copy to EMAIL, "
              "outside the ledger.")
@click.option("--goal", "test_goal", help="With --to: which goal's edition (default: the "
              "post's first goal).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--resend-in-flight", is_flag=True, help="Send again to readers whose batch "
              "was in flight when an earlier publish stopped (they may get two copies).")
def publish(post: str, provider_name: str | None, dry_run: bool, test_to: str | None,
            test_goal: str | None, yes: bool, resend_in_flight: bool) -> None:
    """Send POST to every active reader in its audience, each their goal's edition."""
    from .address import Addresser
    from .deliver import Ledger, send_post
    from .errors import suggest
    from .providers import provider_class
    from .providers.base import Batch, provider_settings, unknown_env_settings
    from .render import EmailRenderer
    from .site import SiteBuilder
    from .store import validate_email

    project = project_here()
    config = project.config
    resolved = project.resolve(project.post(post))
    draft = resolved.post
    if test_goal and not test_to:
        raise RunletterError("--goal goes with --to (a test copy); a publish sends every "
                             "reader their own goal's edition")
    if draft.is_draft and not test_to:
        raise RunletterError(Finding(draft.source.display, draft.source.line("status"),
                                     "is a draft; set 'status: ready' to send it "
                                     "(or send yourself a test copy with --to)"))
    from .check import check_posts

    findings = check_posts(project, [draft])
    errors = [f for f in findings if f.level == "error"]
    if errors:
        report(findings)
        raise RunletterError(Finding(draft.source.display, None, f"not sent: {len(errors)} "
                                     "errors found by 'runletter check'; fix them first"))
    report(findings)
    name = provider_name or config.delivery.provider
    cls = provider_class(name)
    settings = provider_settings(cls, config)
    for warning in unknown_env_settings(cls):
        click.echo(f"warning: {warning}", err=True)
    renderer = EmailRenderer(config)
    goals = [g.slug for g in resolved.audience]

    if test_to:
        if reason := validate_email(test_to):
            raise RunletterError(f"--to {test_to}: not an email address ({reason})")
        goal_slug = test_goal or goals[0]
        if goal_slug not in goals:
            raise RunletterError(f"--goal {goal_slug}: not in the post's audience"
                                 + suggest(goal_slug, goals) + f"; it is: {', '.join(goals)}")
        addresser = Addresser(config, _signer_for(project, cls))
        edition = renderer.edition(renderer.prepare(resolved), project.goals.get(goal_slug))
        compiled = addresser.compile(edition)
        # A Message-ID of its own each time, so a mail client shows every test copy.
        recipient = addresser.recipient(f"test-{draft.slug}-{time.time_ns()}", 0, test_to, "")
        with cls(config, addresser, settings) as provider:
            [receipt] = provider.send(Batch(edition, compiled, (recipient,)))
        if receipt.status != "accepted":
            raise RunletterError(f"test copy to {test_to} not sent: {receipt.reason}")
        click.echo(f"sent a test copy of the {goal_slug} edition to {test_to} via {name}")
        return

    with open_store(project) as store:
        ledger = Ledger(store)
        plan = ledger.preview(draft.slug, goals, project.goals.slugs)
        rows = [["segment", "to send", "already sent"]]
        rows += [[g, str(plan.to_send[g]), str(plan.done[g])] for g in goals]
        _table(rows)
        for slug, count in plan.unmatched.items():
            click.echo(f"warning: {count} active readers have the goal '{slug}', which is not "
                       f"in {config.goals_path.name}; they get nothing", err=True)
        if plan.in_flight:
            verb = "will be sent again" if resend_in_flight else "will NOT be sent again"
            click.echo(f"warning: {plan.in_flight} deliveries were in flight when an earlier "
                       f"publish stopped; they may or may not have gone out and {verb}"
                       + ("" if resend_in_flight else " (use --resend-in-flight to resend)"),
                       err=True)
        to_send = plan.total + (plan.in_flight if resend_in_flight else 0)
        if dry_run:
            click.echo(f"dry run: would send {to_send} messages via {name}; nothing sent")
            return
        if to_send == 0:
            click.echo("nothing to send: every reader in the audience already has this post")
            return
        if not yes:
            click.confirm(f"Send '{draft.subject}' to {to_send} readers via {name}?",
                          abort=True)
        addresser = Addresser(config, _signer_for(project, cls))
        if resend_in_flight:
            ledger.release_in_flight(draft.slug)
        ledger.plan(draft.slug, goals)
        delivery = config.delivery
        with cls(config, addresser, settings) as provider, click.progressbar(
                length=to_send, label=f"sending via {name}", file=sys.stderr) as bar:
            outcome = send_post(resolved, ledger, provider, renderer, addresser,
                                max_attempts=delivery.max_attempts,
                                backoff_base=delivery.backoff_base,
                                backoff_max=delivery.backoff_max, progress=bar.update,
                                retry_after_max=delivery.retry_after_max,
                                notice=_label_notice(bar, f"sending via {name}"))
        table = ledger.report(draft.slug)
        rows = [["segment", "sent", "rejected", "failed", "in-flight"]]
        for goal in goals:
            states = table.get(goal, {})
            rows.append([goal, *(str(states.get(s, 0)) for s in
                                 ("sent", "rejected", "failed", "in-flight"))])
        _table(rows)
        click.echo(f"sent {sum(outcome.sent.values())} messages in {outcome.batches} batches")
    try:
        builder = SiteBuilder(config, project.goals, project.catalogue)
        builder.build(project.resolve_all())
    except RunletterError as exc:  # another post's mistake must not fail a finished send
        click.echo(f"warning: the archive was not rebuilt ({exc.findings[0]}); fix it and "
                   "run 'runletter build'", err=True)
    if outcome.resume_at is not None:
        raise _stopped_early(outcome, getattr(cls, "label", "") or name,
                             draft.source.display, delivery.retry_after_max)
    if sum(outcome.failed.values()):
        raise RunletterError(f"{sum(outcome.failed.values())} deliveries failed after "
                             f"{delivery.max_attempts} tries; run publish again to retry them")


def _label_notice(bar: Any, label: str) -> Callable[[str], None]:
    """Show a publish's notice (the provider asked to wait) in its progress line."""
    def notice(text: str) -> None:
        bar.label = f"{label} ({text})" if text else label
        bar.render_progress()
    return notice


def _stopped_early(outcome: Outcome, provider: str, where: str,
                   ceiling: float) -> RunletterError:
    """The one line a publish stopped by a too-long Retry-After ends with."""
    assert outcome.resume_at is not None and outcome.wait_asked is not None
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(math.ceil(outcome.resume_at)))
    return RunletterError(Finding(where, None, f"stopped: {provider} asked to wait "
                                  f"{math.ceil(outcome.wait_asked)} s, longer than [delivery] "
                                  f"retry_after_max ({ceiling:g} s); the rest is not sent yet: "
                                  f"run publish again after {when}"))


@main.command("report")
@click.argument("post")
def report_command(post: str) -> None:
    """Show the ledger of POST per segment and state."""
    from .commands.report import ledger_report
    from .deliver import STATES

    ledger = ledger_report(project_here(), post)
    if not ledger.segments:
        click.echo(f"{ledger.post}: not published yet")
        return
    rows = [["segment", *STATES, "total"]]
    for goal, states in ledger.segments:
        rows.append([goal, *(str(states.get(s, 0)) for s in STATES), str(sum(states.values()))])
    totals = [sum(t.get(s, 0) for _, t in ledger.segments) for s in STATES]
    rows.append(["total", *(str(n) for n in totals), str(sum(totals))])
    table(rows)


@main.group("layouts")
def layouts() -> None:
    """List the built-in layouts, or copy one into layouts/ to edit.

    A file in layouts/ replaces the built-in one of the same name; a layout that starts with
    {% extends "!builtin/email/base.mjml.j2" %} overrides only the blocks it names.
    """


def config_here():
    """The settings of the newsletter at or above the current folder (no content loaded)."""
    from .config import find_root, load_config

    return load_config(find_root(Path.cwd()))


@layouts.command("list")
def layouts_list() -> None:
    """Every built-in layout; the ones this newsletter overrides are marked."""
    from .commands.layouts import list_layouts

    for layout in list_layouts(config_here()):
        click.echo(layout.name + (f"  (overridden by {layout.override})" if layout.override
                                  else ""))


@layouts.command("eject")
@click.argument("name")
@click.option("--force", is_flag=True, help="Replace an existing override with the built-in.")
def layouts_eject(name: str, force: bool) -> None:
    """Copy the built-in layout NAME (e.g. email/partials/footer.mjml.j2) into layouts/."""
    from .commands.layouts import eject_layout

    path = eject_layout(config_here(), name, force)
    click.echo(f"created {path} (a copy of the built-in, to edit)")


if __name__ == "__main__":  # pragma: no cover
    main()
