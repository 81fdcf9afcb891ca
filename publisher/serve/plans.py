"""The reader's plan: /ready/<token> (the reader is ready for the step after a gate) and
/calendar/<token>.ics (their race day and upcoming steps as an iCalendar feed).

Both links carry the authority in their signed token, so neither needs a cookie. Any link
that is not good (forged, for another purpose, of a removed reader) is a plain 404, the
same page as a path that does not exist: nothing tells who is on the list.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import abort, current_app, request

from publisher import clock
from publisher.content.sequences import load_sequences
from publisher.delivery.tokens import TokenData
from publisher.errors import RunletterError
from publisher.schedule.agenda import Agenda
from publisher.serve.context import app_state
from publisher.serve.db import get_store
from publisher.serve.ical import Step, reader_calendar
from publisher.serve.pages import ReaderPages
from publisher.serve.ui import link_for, message, render, verified
from publisher.store import Subscriber

bp = ReaderPages("plans", __name__)


def signed_reader(purpose: str, token: str) -> tuple[Subscriber, TokenData]:
    """The reader and the token's data of a good link; a 404 for any other."""
    reader, data = verified(purpose, token)
    if reader is None:  # not the page `verified` would show: that one tells more
        abort(404)
    return reader, data


@bp.route("/ready/<token>", methods=["GET", "POST"])
def ready(token: str):
    """GET shows one button (mail scanners open links); its POST records the reader ready."""
    reader, data = signed_reader("ready", token)
    step = data.item
    if "/" not in step:  # a ready link always names its gated step, "<sequence>/<stem>"
        abort(404)
    if not reader.is_active:
        return message(200, "Not subscribed", "You're not getting emails just now",
                       f"{reader.email} isn't receiving {app_state().config.name}, so there is "
                       "no next phase to send. Your preferences page can change that.",
                       link=(link_for("preferences", reader), "Your preferences"))
    store = get_store()
    if request.method == "POST":
        store.mark_ready(reader.id, step)  # a second press records nothing new
    done = store.ready_at(reader.id, step) is not None
    return render("ready", title="You're ready" if done else "Ready for the next phase?",
                  reader=reader, done=done)


@bp.get("/calendar/<token>.ics")
def calendar(token: str):
    """The reader's race day and upcoming steps, as an iCalendar (RFC 5545) feed."""
    reader, _ = signed_reader("calendar", token)
    steps = upcoming(reader) if reader.is_active else ()  # nothing is sent to anyone else
    feed = reader_calendar(app_state().config, reader, steps, clock.now())
    response = current_app.response_class(feed, mimetype="text/calendar")
    response.headers["Content-Disposition"] = 'attachment; filename="plan.ics"'
    return response


def upcoming(reader: Subscriber) -> Sequence[Step]:
    """The reader's upcoming sequence steps, as the scheduler plans them now (none when the
    sequences cannot be read: the feed still has the race day)."""
    config, goals = app_state().config, app_state().goals
    try:
        sequences = load_sequences(config.content_dir, config.root, goals)
    except RunletterError as exc:
        current_app.logger.warning("calendar without steps: %s", exc.findings[0])
        return ()
    agenda = Agenda(config, get_store(), sequences, (), goals.slugs)
    steps = agenda.reader_plan(reader.id, clock.now())
    for why in agenda.unreadable.values():
        current_app.logger.warning("calendar without steps for reader #%s: %s", reader.id, why)
    return steps
