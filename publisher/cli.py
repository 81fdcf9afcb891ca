"""The `runletter` command: thin verbs over the pipeline; user mistakes print, never trace."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import Finding, RunletterError, display_path
from .project import Project, open_project

if TYPE_CHECKING:
    from .deliver import Outcome

# Verbs in their own modules, imported only when used (keeps `runletter build` quick).
LAZY_COMMANDS = {
    "layouts": "publisher.layouts_command:layouts_command",
    "preview": "publisher.preview:preview_command",
    "serve": "publisher.serve:serve_command",
}


class Runletter(click.Group):
    """Prints RunletterError findings one per line and exits 1, with no traceback."""

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
            report(exc.findings, levels=False)
            ctx.exit(1)


def report(findings: tuple[Finding, ...] | list[Finding], levels: bool = True) -> None:
    """Errors before warnings, each as `path:line: level: message` (as `runletter check`
    prints them), or with levels=False as `path:line: message`, naming warnings only."""
    ordered = sorted(findings, key=lambda f: f.level != "error")
    for finding in ordered:
        where = f"{finding.path}:{finding.line}" if finding.line else finding.path
        placeless = finding.path == "runletter"
        level = f"{finding.level}: " if levels or placeless or finding.level != "error" else ""
        click.echo(f"{where}: {level}{finding.message}", err=True)


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
    from .site import SiteBuilder

    project = open_project(Path.cwd(), cache=True)
    resolved = project.resolve_all(include_drafts=drafts)
    builder = SiteBuilder(project.config, project.goals, project.catalogue)
    site = builder.build(resolved, out)
    project.save_cache()
    click.echo(f"built {display_path(site, project.root)}/: {len(resolved)} posts, "
               f"{len(project.catalogue)} exercises, {len(project.goals.items)} goals "
               f"({builder.written} files written)")


@main.command()
@click.argument("post")
@click.option("--goal", "goal_slug", help="Which goal's edition (default: general, "
              "or the post's first goal).")
@click.option("--text", is_flag=True, help="Print the plain-text part instead of the HTML.")
def render(post: str, goal_slug: str | None, text: bool) -> None:
    """Print one edition of POST (a slug or a path) to stdout."""
    from .errors import suggest
    from .render import EmailRenderer

    project = project_here()
    resolved = project.resolve(project.post(post))
    slugs = [g.slug for g in resolved.audience]
    if goal_slug is None:
        goal_slug = "general" if "general" in slugs else slugs[0]
    if project.goals.get(goal_slug) is None:
        slugs_all = project.goals.slugs
        raise RunletterError(f"unknown goal '{goal_slug}'" + suggest(goal_slug, slugs_all)
                             + f"; goals are: {', '.join(slugs_all)}")
    if goal_slug not in slugs:
        raise RunletterError(Finding(resolved.post.source.display, None,
                                     f"the post's audience is {', '.join(slugs)}; "
                                     f"there is no '{goal_slug}' edition"))
    renderer = EmailRenderer(project.config)
    prepared = renderer.prepare(resolved)
    edition = renderer.edition(prepared, project.goals.get(goal_slug))
    sys.stdout.write(edition.text() if text else edition.html())


@main.command()
@click.argument("posts", nargs=-1)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.option("--links", is_flag=True, help="Also ask every external link (needs network).")
def check(posts: tuple[str, ...], strict: bool, links: bool) -> None:
    """Check every edition of POSTS (default: all posts) before sending."""
    from .check import check_posts

    project = project_here()
    chosen = [project.post(p) for p in posts] if posts else list(project.posts())
    findings = check_posts(project, chosen, online=links)
    report(findings)
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    click.echo(f"checked {len(chosen)} posts: {errors} errors, {warnings} warnings", err=True)
    if errors or (strict and warnings):
        sys.exit(1)


@main.group()
def new() -> None:
    """Scaffold a post or an exercise with its front matter filled in."""


@new.command("post")
@click.argument("title")
def new_post_command(title: str) -> None:
    """Create content/posts/<date>-<slug>.md as a draft."""
    from .scaffold import new_post

    project = project_here()
    path = new_post(project.config, title)
    click.echo(f"created {display_path(path, project.root)}")


@new.command("exercise")
@click.argument("name")
def new_exercise_command(name: str) -> None:
    """Create content/exercises/<slug>.md."""
    from .scaffold import new_exercise

    project = project_here()
    path = new_exercise(project.config, name)
    click.echo(f"created {display_path(path, project.root)}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Start a new newsletter in DIRECTORY with a minimal example."""
    from .scaffold import init_project

    init_project(directory)
    click.echo(f"created a newsletter in {directory}/ — next: cd {directory} && runletter build")


def open_store(project: Project):
    """The subscriber store named in runletter.toml (created on first use)."""
    from .store import Store

    return Store.open(project.config.store_path)


@main.group()
def subscribers() -> None:
    """Manage readers: import, add, remove, list, export."""


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
              help="Read COLUMN as email, first_name, name (first word kept), goal, tags or "
              "status; repeatable.")
@click.option("--dry-run", is_flag=True, help="Show the format, the column mapping and the "
              "counts per status and goal, with every row error; write nothing.")
def subscribers_import(csv_file: Path, source: str, status: str | None, goal: str | None,
                       maps: tuple[str, ...], dry_run: bool) -> None:
    """Import readers from a CSV export (Runletter's own, or Mailchimp, Substack, Ghost,
    listmonk, Buttondown or Kit) in one transaction."""
    from .arrivals import ArrivalOptions, import_file

    project = project_here()
    if not csv_file.is_file():
        raise RunletterError(f"{csv_file}: no such file")
    options = ArrivalOptions(source=source, status=status, goal=goal, maps=maps,
                             dry_run=dry_run)
    with _import_store(project, dry_run) as store:
        result = import_file(store, csv_file, project.goals, options, display=str(csv_file))
    click.echo(result.format_line())
    if dry_run:
        for line in ["columns:", *result.mapping_lines(), *result.count_lines()]:
            click.echo(line)
    report(result.findings, levels=False)
    click.echo(result.summary(str(csv_file)))
    if result.skipped:
        sys.exit(1)


@contextlib.contextmanager
def _import_store(project: Project, dry_run: bool):
    """The store to import into; a dry run with no store yet reads an empty throwaway one."""
    import tempfile

    from .store import Store

    if not dry_run or project.config.store_path.exists():
        with open_store(project) as store:
            yield store
        return
    with tempfile.TemporaryDirectory() as folder, Store.open(Path(folder) / "dry.db") as store:
        yield store


@subscribers.command("add")
@click.argument("email")
@click.option("--goal", default="general", show_default=True, help="The reader's goal.")
@click.option("--name", "first_name", default="", help="First name, for the greeting.")
@click.option("--tags", default="", help="Tags, separated by ';'.")
def subscribers_add(email: str, goal: str, first_name: str, tags: str) -> None:
    """Add one active reader (consent source: cli)."""
    from .errors import suggest

    project = project_here()
    if project.goals.get(goal) is None:
        raise RunletterError(f"unknown goal '{goal}'" + suggest(goal, project.goals.slugs)
                             + f"; goals are: {', '.join(project.goals.slugs)}")
    with open_store(project) as store:
        reader = store.add(email, goal=goal, first_name=first_name,
                           tags=[t for t in tags.split(";") if t.strip()], consent_source="cli")
    click.echo(f"added {reader.email} ({reader.goal})")


@subscribers.command("remove")
@click.argument("email")
def subscribers_remove(email: str) -> None:
    """Delete a reader and their delivery history (the audit trail keeps the removal)."""
    project = project_here()
    with open_store(project) as store:
        if not store.remove(email):
            raise RunletterError(f"no reader {email}; 'runletter subscribers list' shows them")
    click.echo(f"removed {email}")


@subscribers.command("list")
@click.option("--goal", help="Only this goal.")
@click.option("--status", type=click.Choice(["pending", "active", "unsubscribed", "bounced",
                                             "complained"]), help="Only this status.")
def subscribers_list(goal: str | None, status: str | None) -> None:
    """List readers, one per line: email, goal, status, name."""
    project = project_here()
    with open_store(project) as store:
        for reader in store.list(goal=goal, status=status):
            click.echo(f"{reader.email}\t{reader.goal}\t{reader.status}\t{reader.first_name}")


@subscribers.command("export")
@click.option("--goal", help="Only this goal.")
@click.option("--status", help="Only this status.")
def subscribers_export(goal: str | None, status: str | None) -> None:
    """Write readers as CSV to stdout."""
    project = project_here()
    with open_store(project) as store:
        store.export_csv(sys.stdout, goal=goal, status=status)


@main.command()
def audience() -> None:
    """Count active readers per goal."""
    project = project_here()
    with open_store(project) as store:
        counts = store.count_by_goal("active")
    total = sum(counts.values())
    width = max([len(g.label) for g in project.goals] + [8]) + 16
    for goal in project.goals:
        click.echo(f"{goal.label:<{width}}{counts.pop(goal.slug, 0):>7}")
    for slug, count in sorted(counts.items()):
        click.echo(f"{slug + ' (not in goals.toml)':<{width}}{count:>7}")
    click.echo(f"{'Total active':<{width}}{total:>7}")


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
    from .deliver import STATES, Ledger

    project = project_here()
    slug = project.post(post).slug
    with open_store(project) as store:
        table = Ledger(store).report(slug)
    if not table:
        click.echo(f"{slug}: not published yet")
        return
    rows = [["segment", *STATES, "total"]]
    for goal, states in table.items():
        rows.append([goal, *(str(states.get(s, 0)) for s in STATES), str(sum(states.values()))])
    totals = [sum(t.get(s, 0) for t in table.values()) for s in STATES]
    rows.append(["total", *(str(n) for n in totals), str(sum(totals))])
    _table(rows)


if __name__ == "__main__":  # pragma: no cover
    main()
