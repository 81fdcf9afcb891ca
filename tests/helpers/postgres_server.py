"""A real PostgreSQL server for tests, started from the machine's binaries (initdb, pg_ctl)
in a temporary folder, on a free port of 127.0.0.1.

    server = PostgresServer(find_bin_dir())
    server.start()                      # initdb, pg_ctl start; bounded wait for connections
    url = server.create_database("x")   # postgresql://runletter@127.0.0.1:PORT/x
    server.create_database("y", template="x")   # a copy: migrate once, clone per test
    server.drop_database("x")           # its open connections are ended first
    server.stop()                       # pg_ctl stop -m immediate, folder removed

PostgreSQL refuses to run as root: a root test run starts it as the `postgres` user (made
with `useradd --system` when missing), which owns the folder. The cluster trusts every local
connection and never syncs to disk: it is for tests only, and it listens on loopback only.
"""

from __future__ import annotations

import contextlib
import math
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from tests.helpers.support import free_port
from tests.samples import HOST

PG_LIB = Path("/usr/lib/postgresql")  # Debian and Ubuntu: one <version>/bin per major
ROLE = "runletter"  # the superuser initdb makes; the URLs name it
START_TIMEOUT = 30  # seconds until the server accepts connections
STOP_TIMEOUT = 10
COMMAND_TIMEOUT = 120  # initdb on a busy machine
LOG_TAIL = 20  # lines of the server's log in a start failure
# Speed over durability, and room for many workers' connections.
SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
            "max_connections": "200"}


def find_bin_dir(search_path: str | None = None, lib: Path = PG_LIB) -> Path | None:
    """The folder with initdb and pg_ctl: from PATH first, else the highest version in lib."""
    found = shutil.which("initdb", path=search_path)
    if found:
        folder = Path(found).resolve().parent  # a symlink's target has postgres beside it
        if (folder / "pg_ctl").exists():
            return folder
    versions = [(_version(path.parent.parent.name), path.parent)
                for path in lib.glob("*/bin/initdb") if (path.parent / "pg_ctl").exists()]
    versions = [(key, folder) for key, folder in versions if key is not None]
    return max(versions)[1] if versions else None


def _version(name: str) -> tuple[int, ...] | None:
    """A version folder's name as numbers ("9.6" < "16"); None for anything else."""
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return None


def _server_user() -> str:
    """The user the server runs as: ours, or `postgres` when we are root (made if missing)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "postgres"], check=True,
                       capture_output=True, timeout=COMMAND_TIMEOUT)
    return "postgres"


class PostgresServer:
    """One throwaway PostgreSQL cluster; start() it, stop() it (stop is safe to repeat)."""

    def __init__(self, bin_dir: Path, port: int | None = None, parent: Path | None = None):
        self.bin_dir = Path(bin_dir)
        self.port = port or free_port()
        self.parent = parent  # where the temporary folder goes (default: the system's)
        self.user = _server_user()
        self.folder: Path | None = None  # made by start(), removed by stop()

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (inside the temporary folder)."""
        assert self.folder is not None, "start() the server first"
        return self.folder / "data"

    def url(self, database: str) -> str:
        """The URL of one of the server's databases (no password: the cluster trusts all)."""
        return f"postgresql://{ROLE}@{HOST}:{self.port}/{database}"

    def start(self) -> None:
        """initdb and start the server; wait (bounded) until it accepts connections."""
        self.folder = Path(tempfile.mkdtemp(prefix="runletter-pg-", dir=self.parent))
        account = pwd.getpwnam(self.user)
        os.chown(self.folder, account.pw_uid, account.pw_gid)  # the server writes only here
        try:
            self._initdb()
            deadline = time.monotonic() + START_TIMEOUT
            self._start(deadline)
            self._wait_for_connections(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server at once (no checkpoint: the data is thrown away) and remove it."""
        if self.folder is None or not self.folder.exists():
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", self.data_dir, "-m", "immediate", "-w",
                      "-t", str(STOP_TIMEOUT))
        shutil.rmtree(self.folder, ignore_errors=True)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database (empty, or a copy of `template`) and return its URL."""
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:  # the template must have no open connections
            create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self._admin() as conn:
            conn.execute(create)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending the connections still open to it first."""
        with self._admin() as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", [name])
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    def _admin(self) -> psycopg.Connection:
        # CREATE/DROP DATABASE cannot run inside a transaction.
        return psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5)

    def _initdb(self) -> None:
        result = self._run("initdb", "-D", self.data_dir, "-A", "trust", "-U", ROLE,
                           "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")

    def _start(self, deadline: float) -> None:
        options = [f"-k {shlex.quote(str(self.folder))}", f"-p {self.port}",
                   f"-c listen_addresses={HOST}",
                   *(f"-c {key}={value}" for key, value in SETTINGS.items())]
        result = self._run("pg_ctl", "start", "-D", self.data_dir, "-l", self._log,
                           "-w", "-t", str(math.ceil(deadline - time.monotonic())),
                           "-o", " ".join(options))
        if result.returncode != 0:
            raise RuntimeError(self._failure(f"pg_ctl start failed (exit {result.returncode})"))

    def _wait_for_connections(self, deadline: float) -> None:
        # pg_ctl -w waits for the server's "ready" mark; a connection proves it, within bounds.
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(self._failure(
                        f"no connection within {START_TIMEOUT} s")) from None
                time.sleep(0.1)

    @property
    def _log(self) -> Path:
        assert self.folder is not None
        return self.folder / "server.log"

    def _failure(self, what: str) -> str:
        """What went wrong, where, and the end of the server's log."""
        with contextlib.suppress(OSError):
            lines = self._log.read_text(encoding="utf-8", errors="replace").splitlines()
            tail = "\n".join(lines[-LOG_TAIL:])
            return f"PostgreSQL on {HOST}:{self.port}: {what}; the end of its log:\n{tail}"
        return f"PostgreSQL on {HOST}:{self.port}: {what}; it wrote no log"

    def _run(self, program: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """Run one of the binaries as the server's user, in its folder, without PG* settings."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        as_user = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam(self.user)
            as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        return subprocess.run([str(self.bin_dir / program), *map(str, args)], cwd=self.folder,
                              env=env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, **as_user)
