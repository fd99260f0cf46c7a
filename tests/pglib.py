"""Throwaway PostgreSQL clusters for tests: ``initdb`` into a temporary directory, a
server on a free loopback port, a database per test, and a stop by ``pg_ctl`` (by pid if
that fails).

The server is ``llmkg.cluster.postgres.PostgresServer``, which finds its binaries on PATH
or in Debian's ``/usr/lib/postgresql/<version>/bin``. Without them the PostgreSQL tests
skip, except under CI (the ``CI`` variable), where they fail: ``.ci/run`` installs them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverlib import free_port

from llmkg.cluster.postgres import PostgresError, PostgresServer, find_binary

# The superuser's password: the tests connect over TCP with it, so that they also show
# that it never reaches a log or an error message.
PASSWORD = "pg-test-secret-7f3a"


def binaries_or_skip() -> None:
    try:
        for name in ("initdb", "pg_ctl"):
            find_binary(name)
    except PostgresError as e:
        if os.environ.get("CI"):
            pytest.fail(f"{e}: CI must install them (.ci/run)")
        pytest.skip(str(e))


class Cluster:
    """One PostgreSQL server of its own, owned by the test run (``PostgresServer``, as the
    local cluster runs it: as the ``postgres`` user when root)."""

    def __init__(self) -> None:
        binaries_or_skip()
        self.root = Path(tempfile.mkdtemp(prefix="llmkg-pg-"))
        self.port = free_port()
        self.server = PostgresServer(
            self.root / "data", self.port, PASSWORD, self.root / "server.log"
        )
        self.data = self.server.data_dir
        self._dbs = itertools.count()
        try:
            self.server.init("--no-sync")
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    @property
    def dsn(self) -> str:
        """The maintenance database, over TCP with the password."""
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return self.server.dsn(dbname)

    def start(self) -> Cluster:
        # fsync off: a test cluster need not survive a power cut, and the 2 cores it
        # shares are better spent on the tests.
        try:
            self.server.start("fsync=off", "full_page_writes=off", "max_connections=100")
        except PostgresError as e:
            raise RuntimeError(f"{e}\n{self.log()}") from None
        return self

    def log(self) -> str:
        path = self.server.log
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self) -> int | None:
        return self.server.pid()

    def stop(self) -> None:
        """Stop the server: ``pg_ctl stop -m fast``, else SIGQUIT then SIGKILL by pid."""
        self.server.stop()

    def create_database(self) -> str:
        """A new, empty database; its DSN."""
        import psycopg

        name = f"llmkg_test_{os.getpid()}_{next(self._dbs)}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn_for(name)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c.start()
    finally:
        c.destroy()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The session's PostgreSQL server, stopped at the end of the run."""
    with cluster() as c:
        yield c


@pytest.fixture
def pg_dsn(pg_cluster: Cluster) -> str:
    """The DSN of a new database of the session's server, for one test."""
    return pg_cluster.create_database()
