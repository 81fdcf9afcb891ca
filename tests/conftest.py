"""Shared fixtures and constants: copies of the sample newsletter in tmp folders; tests never
write the repo. Plain helpers are in support.py and the other helper modules beside it."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from publisher.delivery.address import Addresser
from publisher.delivery.tokens import Signer
from publisher.model import Goal, Goals
from publisher.project import open_project
from publisher.render.email import EmailRenderer
from publisher.store import Store
from publisher.store.database import ENV as DATABASE_URL

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

# PostgreSQL: the tests start their own server from the machine's binaries (postgres_server.py).
NO_POSTGRES = "no PostgreSQL binaries (initdb/pg_ctl) on this machine"


def copy_sample(target: Path) -> Path:
    """Copy the repo's sample newsletter (config, content, goals, readers, layouts) to target."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "runletter.toml", target / "runletter.toml")
    for folder in ("content", "layouts"):
        shutil.copytree(REPO / folder, target / folder)
    (target / "subscribers").mkdir()
    for name in ("goals.toml", "sample.csv"):
        shutil.copy(REPO / "subscribers" / name, target / "subscribers" / name)
    return target


@pytest.fixture
def sample_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A writable copy of the sample newsletter, as the current folder, with a secret set."""
    root = copy_sample(tmp_path / "news")
    monkeypatch.chdir(root)
    monkeypatch.setenv("RUNLETTER_SECRET", SECRET)
    return root


@pytest.fixture
def project_dir(tmp_path, monkeypatch) -> Path:
    """The fixture newsletter (no layouts/ of its own), as the current folder."""
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def timed_root(tmp_path, monkeypatch) -> Path:
    """The fixture newsletter with its sequences and [schedule], as the current folder."""
    root = tmp_path / "timed"
    shutil.copytree(FIXTURE, root)
    shutil.copytree(SEQUENCES, root / "content" / "sequences")
    with open(root / "runletter.toml", "a", encoding="utf-8") as config:
        config.write(SCHEDULE)
    monkeypatch.chdir(root)
    monkeypatch.setenv("RUNLETTER_SECRET", SECRET)
    return root


@pytest.fixture(scope="module")
def setup():
    """(project, editions, addresser) of the sample's Hip Drive post, read from the repo."""
    project = open_project(REPO)
    renderer = EmailRenderer(project.config)
    resolved = project.resolve(project.post(HIP_DRIVE))
    editions = renderer.editions(resolved)
    addresser = Addresser(project.config, Signer(SECRET))
    return project, editions, addresser


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> str:
    """Where a test's own store is: a SQLite file in tmp_path, or the backend's fresh
    PostgreSQL database."""
    return os.environ.get(DATABASE_URL) or f"sqlite:///{tmp_path / 'db' / 'runletter.db'}"


@pytest.fixture
def store(store_url: str):
    """A real, empty store of the test's backend (at store_url)."""
    with Store.open(store_url) as opened:
        yield opened


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the whole run, on a free loopback port; skipped without
    binaries."""
    from .postgres_server import PostgresServer, find_bin_dir  # psycopg only when asked for

    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(NO_POSTGRES)
    server = PostgresServer(bin_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> Iterator[str]:
    """The URL of a fresh, empty database of the test server, dropped after the test."""
    name = f"test_{uuid.uuid4().hex}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def postgres_template(postgres_server) -> str:
    """A database of the test server migrated once, for each test's database to copy (a copy
    takes a fraction of the time the migrations take)."""
    name = "runletter_template"
    Store.open(postgres_server.create_database(name)).close()  # closed: a template has no users
    return name


@contextlib.contextmanager
def fresh_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new copy of the migrated template on the test server, dropped after."""
    server = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("postgres_template")
    name = f"test_{uuid.uuid4().hex}"
    try:
        yield server.create_database(name, template=template)
    finally:
        server.drop_database(name)


BACKENDS = ["sqlite", "postgresql"]
# A module's `pytestmark` when each of its tests runs against both stores.
ON_BOTH_BACKENDS = pytest.mark.usefixtures("backend")


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch) -> Iterator[str]:
    """The store the test runs against, "sqlite" or "postgresql": for PostgreSQL a fresh copy
    of the migrated template, named by RUNLETTER_DATABASE_URL so that everything that opens
    the project's store (the CLI, serve, publish, import) opens it; for SQLite the project's
    file, the variable unset."""
    if request.param == "sqlite":
        monkeypatch.delenv(DATABASE_URL, raising=False)
        yield "sqlite"
        return
    with fresh_database(request) as url:
        monkeypatch.setenv(DATABASE_URL, url)
        yield "postgresql"


@pytest.fixture(scope="module", params=BACKENDS)
def module_database(request) -> Iterator[str]:
    """For a module whose tests share one server: the RUNLETTER_DATABASE_URL to start it with,
    "" for the project's SQLite file or a fresh PostgreSQL database's URL (the environment
    is left alone: other tests of the module have their own backend)."""
    if request.param == "sqlite":
        yield ""
        return
    with fresh_database(request) as url:
        yield url


# Property tests over readers: enough examples to find a hole, few enough for CI.
FAST = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
