"""The reader pages: signup (and the embeddable form), confirm, unsubscribe, preferences.

Only a POST changes a reader: Flask answers HEAD with a route's GET view, so views test for
POST, never for GET. Each change is one Store method, in one transaction.
"""

from __future__ import annotations

import functools
import logging
import zoneinfo
from collections.abc import Mapping

from flask import Blueprint, current_app, redirect, request
from flask.blueprints import BlueprintSetupState

from publisher import clock
from publisher.clock import DATE_RANGE
from publisher.emails import CONTROL_RE
from publisher.errors import RunletterError
from publisher.model import EVERYONE
from publisher.serve.context import app_state
from publisher.serve.db import get_store
from publisher.serve.security import (
    RATE_WINDOW,
    client_ip,
    csrf_ok,
    give_back_mail_slot,
    take_mail_slot,
    take_signup_slot,
)
from publisher.serve.ui import (
    csrf_refused,
    link_for,
    message,
    render,
    send_confirmation,
    verified,
    with_csrf,
)
from publisher.store import LEFT, MAX_NAME, Subscriber, name_problem, validate_email
from publisher.store.records import (
    MAX_RACE_NAME,
    RaceDateOutOfRange,
    check_race_date,
    check_race_name,
)

log = logging.getLogger("runletter.serve")
CONSENT_SOURCE = "signup form"
DONE_TEXT = {
    "saved": "Saved. Your next email will follow these preferences.",
    "paused": "Paused. You won't get any emails until you resume.",
    "resumed": "Welcome back: you'll get the next edition.",
    "unsubscribed": "You're unsubscribed. We won't email you again.",
}
VIA = "preferences page"
RACE_ERRORS = {  # what is wrong with a race field, in the reader's words
    "race_date": (check_race_date, "Please give your race date as a date, e.g. 2027-03-28."),
    "race_name": (check_race_name, f"Your race name can be at most {MAX_RACE_NAME} "
                  "characters, on one line."),
}
RANGE_ERROR = f"Please give a race date from {DATE_RANGE}."
ZONE_ERROR = "Please pick a time zone from the list."


class _PlainNames(BlueprintSetupState):
    def add_url_rule(self, rule, endpoint=None, view_func=None, **options):
        """Register under the view's own name, not 'blueprint.name'."""
        self.app.add_url_rule(rule, endpoint or view_func.__name__, view_func, **options)


class ReaderPages(Blueprint):
    """A blueprint whose endpoints keep their plain names: confirm, unsubscribe and
    preferences are also the purposes their links' tokens are signed for."""

    def make_setup_state(self, app, options, first_registration=False):
        """Flask's hook for a custom setup state."""
        return _PlainNames(self, app, options, first_registration)


bp = ReaderPages("pages", __name__)


@bp.get("/healthz")
def healthz():
    """A liveness probe."""
    return current_app.response_class("ok\n", mimetype="text/plain")


@bp.get("/style.css")
def style():
    """The archive's stylesheet: the author's, else the built-in one."""
    env = app_state().env
    source = env.loader.get_source(env, "style.css")[0]  # type: ignore[union-attr]
    response = current_app.response_class(source, mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/favicon.ico")
def favicon():
    """Nothing, quietly."""
    return current_app.response_class(status=204)


@bp.get("/")
def home():
    """The signup form."""
    return redirect("/subscribe", code=302)


# -- signup -----------------------------------------------------------------------------------


@bp.route("/subscribe", methods=["GET", "POST"])
def subscribe():
    """The signup form, with a CSRF token."""
    if request.method != "POST":
        return with_csrf("subscribe", title="Subscribe", form=form_values(), errors=(),
                         done=False)
    if not csrf_ok():
        return csrf_refused()
    return signup("subscribe", checked_csrf=True)


@bp.route("/embed", methods=["GET", "POST"])
def embed():
    """The signup form for other sites: no CSRF token (see docs/serve.md, Embedding)."""
    if request.method != "POST":
        return render("embed", title="Subscribe", form=form_values(), errors=(), done=False)
    return signup("embed", checked_csrf=False)


def form_values() -> dict[str, str]:
    """The signup form's fields as given, trimmed and cut to size for showing again; a time
    zone the browser gave that is not one is dropped (the reader never typed it)."""
    goal = request.values.get("goal", "").strip().lower() or EVERYONE
    race = race_values(request.values)
    return {"email": request.values.get("email", "").strip()[:320],
            "first_name": request.values.get("first_name", "").strip()[:MAX_NAME + 20],
            "goal": goal if goal in app_state().goals.slugs else EVERYONE, **race,
            "timezone": race["timezone"] if clock.known_timezone(race["timezone"]) else ""}


def race_values(given: Mapping[str, str]) -> dict[str, str]:
    """The race date, race name and time zone as given, trimmed and cut to a size that
    still shows a value too long as too long."""
    return {"race_date": given.get("race_date", "").strip()[:40],
            "race_name": given.get("race_name", "").strip()[:MAX_RACE_NAME + 20],
            "timezone": given.get("timezone", "").strip()[:80]}


def race_errors(form: Mapping[str, str]) -> list[str]:
    """What is wrong with a form's race date and race name, in the reader's words."""
    errors = []
    for field, (check, error) in RACE_ERRORS.items():
        try:
            check(form[field])
        except RaceDateOutOfRange:
            errors.append(RANGE_ERROR)
        except RunletterError:
            errors.append(error)
    return errors


@functools.cache
def time_zones() -> tuple[str, ...]:
    """Every IANA zone name, sorted, for the preferences page's list."""
    return tuple(sorted(zoneinfo.available_timezones()))


def name_error(name: str) -> str | None:
    """Why the store would refuse a first name, in the reader's words; None if it would not."""
    if name_problem(name) is None:
        return None
    if CONTROL_RE.search(name):
        return "Your first name can't contain line breaks or control characters."
    return f"Your first name can be at most {MAX_NAME} characters."


def posted_goal() -> str:
    """The goal the signup form posted (everyone when none)."""
    return request.form.get("goal", "").strip().lower() or EVERYONE


def signup_errors(form: dict[str, str]) -> list[str]:
    """What is wrong with a signup, in the reader's words."""
    errors = []
    if reason := validate_email(request.form.get("email", "")):
        errors.append(f"That email address doesn't look right: {reason}.")
    if problem := name_error(form["first_name"]):
        errors.append(problem)
    if posted_goal() not in app_state().goals.slugs:
        errors.append("Please pick one of the goals in the list.")
    return errors + race_errors(form)


def signup(template: str, checked_csrf: bool):
    """A signup: the same page whatever the address's state, which is never revealed."""
    form = form_values()
    show = with_csrf if checked_csrf else render
    if request.form.get("website"):  # the honeypot: a bot filled every field
        log.info("signup honeypot filled from %s; ignored", client_ip())
        return show(template, title="Check your inbox", form=form, errors=(), done=True)
    if errors := signup_errors(form):
        return show(template, 400, title="Subscribe", form=form, errors=errors, done=False)
    if not take_signup_slot():
        response = message(429, "Too many signups", "Too many signups from here",
                           "Please try again in an hour.")
        response.headers["Retry-After"] = str(RATE_WINDOW)
        return response
    reader, kind, proposal = record_signup(form, posted_goal())
    # One email per address per link lifetime; a repeat is answered as a first signup.
    if kind and take_mail_slot(reader.email):
        failed = send_confirmation(reader, kind, proposal)
        if failed is not None:
            give_back_mail_slot(reader.email)
            return failed
    return show(template, title="Check your inbox", form=form, errors=(), done=True)


def record_signup(form: dict[str, str], goal: str) -> tuple[Subscriber, str | None, str]:
    """(the reader, the email to send them or None, the proposal their link names): a new
    reader is pending with the form's details. For a stored reader the form only proposes
    details (see docs/serve.md, Signup): a confirmed one (active or paused) is told and
    left as is, a pending or unsubscribed one gets a confirmation whose link applies them,
    and a bounced or complained address gets no mail at all."""
    store = get_store()
    fields = {"goal": goal, "first_name": form["first_name"], "race_date": form["race_date"],
              "race_name": form["race_name"]}
    with store.transaction():
        reader = store.get(form["email"])
        if reader is None:
            try:
                return store.add(form["email"], status="pending", timezone=form["timezone"],
                                 consent_source="signup form, unconfirmed",
                                 consent_ip=client_ip(), **fields), "confirm", ""
            except RunletterError:
                # On PostgreSQL another request may add the address after the look above
                # (SQLite's write lock rules that out): then they are a stored reader.
                if (reader := store.get(form["email"])) is None:
                    raise
        if reader.status == "active" or store.is_paused(reader):
            return reader, "already", ""  # their details only change via their own link
        if reader.status in ("bounced", "complained"):
            return reader, None, ""  # mail there bounces again or is reported as spam
        proposal = store.propose(reader.id, timezone=form["timezone"], **fields)
        return reader, "confirm", str(proposal)


# -- confirm and unsubscribe ------------------------------------------------------------------


def stale_confirmation():
    """The page for a confirmation link older than the reader's leaving."""
    return message(410, "Link expired", "This link is older than your unsubscribe",
                   "To come back, sign up again and we'll send you a fresh confirmation "
                   "link.", link=("/subscribe", "Sign up again"))


def confirmed(reader: Subscriber, heading: str):
    """The page after a confirmation."""
    goal = app_state().goals.get(reader.goal)
    return message(200, "Subscription confirmed", heading,
                   f"Thanks{', ' + reader.first_name if reader.first_name else ''}: "
                   f"{app_state().config.name} will reach you with the "
                   f"{goal.label if goal else reader.goal} edition.",
                   "You can change your goal or name, pause or unsubscribe at any time.",
                   link=(link_for("preferences", reader), "Your preferences"))


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str):
    """GET shows a button (mail scanners open links); its POST makes the reader active."""
    reader, data = verified("confirm", token)
    if reader is None:
        return data
    issued = data.expires - app_state().confirm_ttl
    store = get_store()
    if request.method != "POST":
        if store.left_since(reader, issued):
            return stale_confirmation()
        if reader.status == "active":
            return confirmed(reader, "You're already confirmed")
        goal = app_state().goals.get(reader.goal)
        return render("confirm", title="Confirm your subscription", reader=reader,
                      goal=goal.label if goal else "")
    proposal = int(data.item) if data.item.isdigit() else None
    outcome = store.confirm(reader.id, issued, CONSENT_SOURCE, client_ip(), proposal)
    if outcome == "stale":
        return stale_confirmation()
    return confirmed(store.by_id(reader.id) or reader, "You're in!" if outcome == "confirmed"
                     else "You're already confirmed")


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str):
    """POST (RFC 8058 one-click, or the page's button) unsubscribes; GET shows the button."""
    reader, data = verified("unsubscribe", token)
    if reader is None:
        return data
    if request.method != "POST":
        return render("unsubscribe", title="Unsubscribe", reader=reader,
                      left=reader.status in LEFT, done=False)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    get_store().unsubscribe(reader.id, "one-click unsubscribe (RFC 8058)" if one_click
                            else "unsubscribe link")
    return render("unsubscribe", title="Unsubscribed", reader=reader, left=True, done=True)


# -- preferences ------------------------------------------------------------------------------


def preferences_page(reader: Subscriber, status: int = 200, errors=(),
                     form: dict[str, str] | None = None, done: str = ""):
    """The preferences form for a reader."""
    form = form or {"first_name": reader.first_name, "goal": reader.goal,
                    "race_date": reader.race_date or "", "race_name": reader.race_name,
                    "timezone": reader.timezone}
    return with_csrf("preferences", status, title="Your preferences", reader=reader,
                     paused=get_store().is_paused(reader), errors=errors, form=form,
                     zones=time_zones(), default_zone=app_state().config.schedule.timezone,
                     done=done if done in DONE_TEXT else "", done_text=DONE_TEXT)


@bp.route("/preferences/<token>", methods=["GET", "POST"])
def preferences(token: str):
    """Change name and goal, pause, resume, unsubscribe, or ask to subscribe again."""
    reader, refused = verified("preferences", token)
    if reader is None:
        return refused
    if request.method != "POST":
        return preferences_page(reader, done=request.args.get("done", ""))
    if not csrf_ok():
        return csrf_refused()
    action = request.form.get("action", "save")
    if action == "save":
        return save_preferences(reader)
    if action == "resubscribe":
        return resubscribe(reader)
    store = get_store()
    changes = {"pause": lambda: store.pause(reader.id, VIA) and "paused",
               "resume": lambda: store.resume(reader.id, VIA) and "resumed",
               "unsubscribe": lambda: store.unsubscribe(
                   reader.id, f"unsubscribed ({VIA})", end_pause=True) and "unsubscribed"}
    if action not in changes:
        return message(400, "Unknown action", "That button isn't one we know",
                       "Please go back and try again.")
    return back_to_preferences(changes[action]() or "")


def back_to_preferences(done: str):
    """After a change, the page again (a GET), saying what was done."""
    return redirect(f"{request.path}?done={done}" if done else request.path, code=303)


def save_preferences(reader: Subscriber):
    """A new first name, goal, race date, race name and time zone; a goal change reaches
    the next edition."""
    first_name = request.form.get("first_name", "").strip()
    goal = request.form.get("goal", "").strip().lower()
    race = race_values(request.form)
    errors = [p for p in (name_error(first_name),) if p]
    if goal not in app_state().goals.slugs:
        errors.append("Please pick one of the goals in the list.")
    errors += race_errors(race)
    if race["timezone"] and not clock.known_timezone(race["timezone"]):
        errors.append(ZONE_ERROR)
    if errors:
        return preferences_page(reader, 400, errors,
                                {"first_name": first_name[:MAX_NAME + 20], "goal": goal, **race})
    get_store().change_goal(reader.id, goal, first_name, **race)
    return back_to_preferences("saved")


def resubscribe(reader: Subscriber):
    """A reader who left (not a paused one) asks for a new confirmation email."""
    current = get_store().by_id(reader.id)
    if current is None or current.status not in LEFT or get_store().is_paused(current):
        return redirect(request.path, code=303)
    failed = send_confirmation(current)
    if failed is not None:
        return failed
    config = app_state().config
    return message(200, "Check your inbox", "Check your inbox",
                   f"We've sent a confirmation link to {current.email}. Click it within "
                   f"{config.serve.confirm_hours} hours to start receiving {config.name} "
                   f"again.")
