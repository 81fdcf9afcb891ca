"""Shared fixtures: copies of the sample newsletter in tmp folders (tests never write the
repo), stores of each backend, and the PostgreSQL server. The constants they use are in
samples.py; plain helpers in helpers/."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from publisher.delivery.address import Addresser
from publisher.delivery.tokens import Signer
from publisher.project import open_project
from publisher.render.email import EmailRenderer
from publisher.store import Store
from publisher.store.ledger import Ledger
from tests.helpers.support import copy_sample, import_sample, project_store
from tests.samples import (
    BACKENDS,
    DATABASE_URL,
    FIXTURE,
    HIP_DRIVE,
    NO_POSTGRES,
    REPO,
    SCHEDULE,
    SECRET,
    SEQUENCES,
)


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
    from tests.helpers.postgres_server import (  # psycopg only when asked for
        PostgresServer,
        find_bin_dir,
    )

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
def _fresh_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new copy of the migrated template on the test server, dropped after."""
    server = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("postgres_template")
    name = f"test_{uuid.uuid4().hex}"
    try:
        yield server.create_database(name, template=template)
    finally:
        server.drop_database(name)


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
    with _fresh_database(request) as url:
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
    with _fresh_database(request) as url:
        yield url


@pytest.fixture
def pipeline(sample_root):
    """The sample imported and its Hip Drive post planned: (project, resolved post,
    addresser, ledger, store), the store closed after."""
    import_sample(sample_root)
    project = open_project(sample_root)
    resolved = project.resolve(project.post(HIP_DRIVE))
    addresser = Addresser(project.config, Signer(SECRET))
    store = project_store(sample_root)
    ledger = Ledger(store)
    ledger.plan(HIP_DRIVE, [g.slug for g in resolved.audience])
    yield project, resolved, addresser, ledger, store
    store.close()
