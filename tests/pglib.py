"""Throwaway PostgreSQL clusters for tests: ``initdb`` into a temporary directory, a
server on a free loopback port, a database per test, and a stop by ``pg_ctl`` (by pid if
that fails).

The server binaries come from PATH or Debian's ``/usr/lib/postgresql/<version>/bin``.
Without them the PostgreSQL tests skip, except under CI (the ``CI`` variable), where
they fail: ``.ci/run`` installs them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverlib import free_port

# The superuser's password: the tests connect over TCP with it, so that they also show
# that it never reaches a log or an error message.
PASSWORD = "pg-test-secret-7f3a"
RUN_AS = "postgres"  # initdb and postgres refuse to run as root


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return str(versions[-1]) if versions else None


def binaries_or_skip() -> tuple[str, str]:
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    message = "PostgreSQL server binaries (initdb, pg_ctl) not found"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: CI must install them (.ci/run)")
    pytest.skip(f"{message}: apt-get install postgresql")


class Cluster:
    """One PostgreSQL server of its own, owned by the test run."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = binaries_or_skip()
        self.root = Path(tempfile.mkdtemp(prefix="llmkg-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self._dbs = itertools.count()
        if self.as_root:
            # mkdtemp's directory is private to root: the server's user must own it.
            user = pwd.getpwnam(RUN_AS)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        try:
            self._initdb()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _initdb(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.as_root:
            os.chown(pwfile, pwd.getpwnam(RUN_AS).pw_uid, -1)
        self._run(
            self.initdb,
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", RUN_AS, "--", *args] if self.as_root else list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)

    @property
    def dsn(self) -> str:
        """The maintenance database, over TCP with the password."""
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> Cluster:
        # fsync off: a test cluster need not survive a power cut, and the 2 cores it
        # shares are better spent on the tests.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        try:
            self._run(
                self.pg_ctl,
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data),
                "-l",
                str(self.root / "server.log"),
                "-o",
                options,
            )
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"pg_ctl start failed: {e.stderr}\n{self.log()}") from None
        return self

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop the server: ``pg_ctl stop -m fast``, else SIGQUIT then SIGKILL by pid."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(subprocess.SubprocessError):
            self._run(self.pg_ctl, "stop", "-m", "fast", "-w", "-t", "30", "-D", str(self.data))
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            if not _alive(pid):
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child of ours that exited but was not reaped: not running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


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
