"""The suite's shared constants: the sample newsletter and the fixture newsletter (where they
are, their posts, goals and readers), the secret and loopback host every test uses, the
backends, and the browser. Fixtures are in conftest.py; plain helpers in helpers/."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from publisher.config import ENV as DATABASE_URL  # noqa: F401 (shared under this name)
from publisher.model import Goal, Goals

REPO = Path(__file__).resolve().parents[1]
MOTOR_UNITS = "2026-09-15-motor-unit-activation"  # no audience: every goal gets an edition
SECRET = "test-secret-0123456789abcdef"
HOST = "127.0.0.1"  # every server the tests start listens on loopback only

# The fixture newsletter: small, with one post that uses every feature.
FIXTURE = Path(__file__).parent / "fixtures" / "project"
FIXTURE_SLUG = "2026-01-01-everything"
NEW_POST = "content/posts/2026-01-01-test.md"  # where a test writes a post of its own

# The time feature's newsletter: the fixture project with three sequences (a race plan for
# marathon and ultra readers, a gated comeback, a welcome for 5K readers since 2027-01-01)
# and [schedule] at its defaults written out.
SEQUENCES = Path(__file__).parent / "fixtures" / "sequences"
SCHEDULE = '\n[schedule]\ntimezone = "UTC"\nsend_hour = 6\ngrace_days = 2\n'
STORE = "subscribers/runletter.db"  # where a project keeps its store ([paths] store)
RUNNER = "runner@example.com"  # the one reader of a time test
GATE = "comeback/02-phase-one"  # the fixture's gated step ...
AFTER_GATE = "comeback/03-phase-two"  # ... and the step that waits for the reader's ready
HTML_NAME = '<img src=x onerror="alert(1)"> Bridge & <b>co</b>'  # an exercise name

# The sample newsletter (the repo's own): its Hip Drive post has an audience.
HIP_DRIVE = "2026-11-24-hip-drive"
HIP_DRIVE_GOALS = ["5k", "10k", "half", "marathon", "ultra", "comeback"]
HIP_DRIVE_SENTENCE = "Give it two weeks and reply to tell me how your hips feel on the hills."
AUDIENCE = 59  # active sample readers whose goal is in the Hip Drive audience
GOALS = Goals(items=tuple(Goal(slug, slug.title(), "") for slug in
                          ("5k", "10k", "half", "marathon", "ultra", "comeback", "general")))
HEADER = "email,first_name,goal,tags,status\n"  # of a readers CSV
GATED = "marathon-build/03-long-run"  # a gated step's key: <sequence>/<step file stem>
# A reader's race and time zone, as the store, the CLI, CSV and the pages give them.
RACE_DATE = "2027-03-28"
RACE_NAME = "Valencia Marathon"
ZONE = "Europe/Madrid"

ATOM = "{http://www.w3.org/2005/Atom}"  # how ElementTree prefixes an Atom feed's tags

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; the browser tests never `playwright install`
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# PostgreSQL: the tests start their own server from the machine's binaries
# (helpers/postgres_server.py).
NO_POSTGRES = "no PostgreSQL binaries (initdb/pg_ctl) on this machine"


BACKENDS = ["sqlite", "postgresql"]
# A module's `pytestmark` when each of its tests runs against both stores.
ON_BOTH_BACKENDS = pytest.mark.usefixtures("backend")

# Property tests over readers: enough examples to find a hole, few enough for CI.
FAST = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
