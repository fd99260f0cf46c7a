"""A PostgreSQL server of the machine's own binaries, run for a local cluster: ``initdb``
into a directory, a server on a loopback port, a synchronous standby made by
``pg_basebackup -R``, and its promotion when the primary is gone.

The binaries come from PATH or Debian's ``/usr/lib/postgresql/<version>/bin`` (the
``postgresql`` package). PostgreSQL refuses to run as root: as root, every command runs
as the ``postgres`` user (``runuser``), which then owns the data directories.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

RUN_AS = "postgres"
SUPERUSER = "postgres"
STANDBY_NAME = "llmkg_standby"  # the standby's application_name (its cluster_name)


class PostgresError(RuntimeError):
    """A PostgreSQL command failed; the message holds its output."""


def find_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if not versions:
        raise PostgresError(
            f"{name} not found: install PostgreSQL's server binaries "
            "(`make system-packages`, or apt-get install postgresql)"
        )
    return str(versions[-1])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie child of ours that was not reaped does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


class PostgresServer:
    """One server: its data directory, loopback port and log. ``password`` is the
    superuser's (connections over TCP need it; the Unix socket in ``socket_dir`` trusts
    the server's own user)."""

    def __init__(self, data_dir: Path, port: int, password: str, log: Path) -> None:
        self.data_dir = data_dir
        self.port = port
        self.password = password
        self.log = log
        self.socket_dir = data_dir.parent
        self.as_root = os.geteuid() == 0

    def dsn(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 120) -> str:
        cmd = ["runuser", "-u", RUN_AS, "--", *args] if self.as_root else list(args)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PostgresError(f"{args[0]} took longer than {timeout:g}s") from None
        if done.returncode != 0:
            raise PostgresError(
                f"{Path(args[0]).name} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()}"
            )
        return done.stdout

    def _own(self, path: Path) -> None:
        """As root, hand ``path`` to the server's user."""
        if self.as_root:
            user = pwd.getpwnam(RUN_AS)
            os.chown(path, user.pw_uid, user.pw_gid)

    def prepare(self) -> None:
        """The directory that will hold the data directory, the socket and the
        password file, owned by the server's user."""
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._own(self.socket_dir)
        if self.as_root:
            # Its parents must let the server's user through (a home directory of mode
            # 700 would not): say so now rather than in a failed initdb.
            with contextlib.suppress(PostgresError):
                self._run("test", "-w", str(self.socket_dir))
                return
            raise PostgresError(
                f"the {RUN_AS} user cannot write to {self.socket_dir}: choose a directory "
                "whose parents it can enter (e.g. under /tmp)"
            )

    def _secret_file(self, name: str, text: str) -> Path:
        path = self.socket_dir / name
        path.write_text(text)
        path.chmod(0o600)
        self._own(path)
        return path

    def init(self, *options: str) -> None:
        """``initdb`` with the superuser's password; ``options``: more of its flags."""
        self.prepare()
        # Kept: `cluster down` and `promote` read it back to describe the servers.
        pwfile = self._secret_file("password", self.password + "\n")
        self._run(
            find_binary("initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            *options,
        )

    def base_backup_of(self, primary: PostgresServer) -> None:
        """Make this server a streaming standby of ``primary``: ``pg_basebackup -R``
        copies its data directory and writes how to follow it."""
        self.prepare()
        # libpq's password file: `-R` names it in primary_conninfo, so the password
        # is written in no configuration file.
        passfile = self._secret_file(
            ".pgpass", f"127.0.0.1:{primary.port}:*:{SUPERUSER}:{primary.password}\n"
        )
        self._run(
            find_binary("pg_basebackup"),
            "-d",
            f"host=127.0.0.1 port={primary.port} user={SUPERUSER} passfile={passfile}",
            "-D",
            str(self.data_dir),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            timeout=600,
        )

    def start(self, *settings: str) -> None:
        """Start on 127.0.0.1:port with ``name=value`` settings; waits until it accepts
        connections (a standby: until it is consistent)."""
        options = [f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir}"]
        options += [f"-c {s}" for s in settings]
        try:
            self._run(
                find_binary("pg_ctl"),
                "start",
                "-w",
                "-t",
                "120",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log),
                "-o",
                " ".join(options),
                timeout=180,
            )
        except PostgresError as e:
            raise PostgresError(f"{e}; its log: {self.log}") from None

    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` over the Unix socket; its unaligned output."""
        return self._run(
            find_binary("psql"),
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            dbname,
            "-c",
            sql,
        ).strip()

    def require_sync_standby(self) -> None:
        """Make commits wait for the standby's flush, then wait until it is the
        synchronous one (streaming, ``sync_state = 'sync'``)."""
        self.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
        self.psql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 60
        query = (
            "SELECT count(*) FROM pg_stat_replication "
            f"WHERE application_name = '{STANDBY_NAME}' AND sync_state = 'sync'"
        )
        while self.psql(query) != "1":
            if time.monotonic() >= deadline:
                raise PostgresError("the standby did not become synchronous within 60s")
            time.sleep(0.1)

    def promote(self) -> None:
        """Make this standby the primary, committing without a standby of its own: the
        operator's part of a failover (with no standby left, a synchronous commit would
        wait forever)."""
        self._run(find_binary("pg_ctl"), "promote", "-w", "-t", "60", "-D", str(self.data_dir))
        self.psql("ALTER SYSTEM SET synchronous_standby_names = ''")
        self.psql("SELECT pg_reload_conf()")

    def stop(self, timeout: float = 30) -> None:
        """``pg_ctl stop -m fast``; if that fails, SIGQUIT and then SIGKILL by pid."""
        pid = self.pid()
        if pid is None or not alive(pid):
            return
        with contextlib.suppress(PostgresError):
            self._run(
                find_binary("pg_ctl"),
                "stop",
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "-D",
                str(self.data_dir),
                timeout=timeout + 10,
            )
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            if not alive(pid):
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            wait_gone(pid, 10)
