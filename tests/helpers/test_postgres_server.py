"""The PostgreSQL server the tests start themselves (tests/helpers/postgres_server.py):
found, started as a non-root user on loopback, one database per test, and gone after stop."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.helpers.postgres_server import PostgresServer, find_bin_dir
from tests.samples import HOST


def fake_bin_dir(folder: Path) -> Path:
    """A folder holding executable stand-ins for initdb and pg_ctl."""
    folder.mkdir(parents=True)
    for name in ("initdb", "pg_ctl"):
        (folder / name).write_text("#!/bin/sh\n", encoding="utf-8")
        (folder / name).chmod(0o755)
    return folder


def test_the_server_accepts_a_connection_and_is_the_version_of_its_binaries(postgres_url,
                                                                              postgres_server):
    with psycopg.connect(postgres_url) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
    binaries = subprocess.run([postgres_server.bin_dir / "postgres", "--version"],
                              capture_output=True, text=True, check=True).stdout.split()[2]
    assert version.startswith(f"PostgreSQL {binaries} ")


def test_the_server_listens_on_loopback_and_gives_urls_for_the_runletter_role(postgres_server):
    assert postgres_server.url("news") == f"postgresql://runletter@{HOST}:{postgres_server.port}/news"


def test_two_databases_of_the_server_are_separate(postgres_url, postgres_server):
    other = f"test_{uuid.uuid4().hex}"
    other_url = postgres_server.create_database(other)
    try:
        with psycopg.connect(postgres_url) as conn:
            conn.execute("CREATE TABLE readers (email text)")
            conn.execute("INSERT INTO readers VALUES ('ana@example.com')")
        with psycopg.connect(other_url) as conn:
            found = conn.execute("SELECT to_regclass('readers')").fetchone()[0]
        assert other_url != postgres_url and found is None
    finally:
        postgres_server.drop_database(other)


def test_a_database_made_from_a_template_starts_with_the_templates_tables(postgres_url,
                                                                          postgres_server):
    # A schema migrated once can be cloned per test instead of migrated per test.
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE readers (email text)")
    template = postgres_url.rpartition("/")[2]
    clone = f"test_{uuid.uuid4().hex}"
    try:
        with psycopg.connect(postgres_server.create_database(clone, template=template)) as conn:
            found = conn.execute("SELECT to_regclass('readers')").fetchone()[0]
        assert found == "readers"
    finally:
        postgres_server.drop_database(clone)


def test_dropping_a_database_ends_the_connections_still_open_to_it(postgres_server):
    name = f"test_{uuid.uuid4().hex}"
    left_open = psycopg.connect(postgres_server.create_database(name))
    try:
        postgres_server.drop_database(name)
        with psycopg.connect(postgres_server.url("postgres")) as conn:
            count = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                                 [name]).fetchone()[0]
        assert count == 0
    finally:
        left_open.close()


def test_the_data_directory_belongs_to_the_user_the_server_runs_as(postgres_server):
    owner = pwd.getpwuid(postgres_server.data_dir.stat().st_uid).pw_name
    # PostgreSQL refuses to run as root, so a root test run starts it as postgres.
    expected = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    assert (owner, postgres_server.user) == (expected, expected)


def test_a_stopped_server_refuses_connections_and_leaves_no_folder_behind(postgres_server):
    server = PostgresServer(postgres_server.bin_dir)
    server.start()
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, server.port), timeout=5).close()
    assert not server.folder.exists()


def test_a_server_that_cannot_start_fails_with_the_end_of_its_log(postgres_server):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        server = PostgresServer(postgres_server.bin_dir, port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="could not bind"):
            server.start()
    assert not server.folder.exists()


def test_binaries_on_the_path_are_used_first(tmp_path):
    on_path = fake_bin_dir(tmp_path / "bin")
    fake_bin_dir(tmp_path / "lib" / "16" / "bin")
    assert find_bin_dir(str(on_path), tmp_path / "lib") == on_path


def test_without_binaries_on_the_path_the_highest_version_folder_is_used(tmp_path):
    for version in ("9.6", "15", "16"):  # by number: 9.6 sorts after 16 as text
        fake_bin_dir(tmp_path / "lib" / version / "bin")
    assert find_bin_dir(str(tmp_path / "empty"), tmp_path / "lib") == tmp_path / "lib/16/bin"


def test_no_binaries_anywhere_finds_nothing(tmp_path):
    (tmp_path / "lib" / "15" / "bin").mkdir(parents=True)  # a folder without initdb
    assert find_bin_dir(str(tmp_path / "empty"), tmp_path / "lib") is None
