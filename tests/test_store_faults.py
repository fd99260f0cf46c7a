"""The store's writer under faults: a failed commit, rollback or sync fails its writes with
``StoreError`` and the writer keeps going; a store that cannot commit fails writes at once
and recovers by itself; a write never waits past ``write_timeout``; a dead writer fails
writes instead of hanging them. The last test makes the disk refuse writes for real (a
file size limit) in a child process."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmkg.store import SqliteStore, StoreError, StoreTimeoutError

HERE = Path(__file__).parent


def vec(x: float) -> np.ndarray:
    return np.full(4, x, dtype=np.float32)


class Faults:
    """What the writer's connection does wrong: statements starting with one of ``fail``
    raise (``times`` times; None: until cleared); every statement waits for ``gate``."""

    def __init__(self) -> None:
        self.fail: tuple[str, ...] = ()
        self.times: int | None = None
        self.error: type[BaseException] = sqlite3.OperationalError
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def check(self, sql: str) -> None:
        self.entered.set()
        assert self.gate.wait(30)
        if self.fail and sql.lstrip().upper().startswith(self.fail):
            if self.times is not None:
                self.times -= 1
                if self.times == 0:
                    self.fail = ()
            raise self.error("disk I/O error")


class FaultyConnection:
    """The writer's connection with ``Faults`` in front of its statements."""

    def __init__(self, conn: sqlite3.Connection, faults: Faults) -> None:
        self._conn, self._faults = conn, faults

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._faults.check(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._faults.check(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class FaultyStore(SqliteStore):
    def __init__(self, directory: Path, faults: Faults, **kw: Any) -> None:
        self.faults = faults
        kw.setdefault("retry_interval", 0.01)
        super().__init__(directory, **kw)

    def _writer_connection(self) -> sqlite3.Connection:
        return FaultyConnection(super()._writer_connection(), self.faults)  # type: ignore[return-value]


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_a_failed_commit_fails_its_writes_and_the_writer_goes_on(tmp_path: Path) -> None:
    faults = Faults()
    with FaultyStore(tmp_path, faults) as store:
        kept, _ = store.insert("s", "p", "kept", 0.5, vec(1))
        # Alone, an insert commits itself: its statement is the commit that fails.
        faults.fail, faults.times = ("INSERT",), 1
        with pytest.raises(StoreError, match="could not commit"):
            store.insert("s", "p", "lost", 0.5, vec(2))
        assert store.health()[0], "the probe committed: the store is sound"
        # In a transaction: the COMMIT and then the ROLLBACK fail.
        faults.fail, faults.times = ("COMMIT", "ROLLBACK"), 2
        with pytest.raises(StoreError):
            store.add_reads({kept.node_id: 1})
        after, created = store.insert("s", "p", "after", 0.5, vec(3))
        assert created and store.failed_writes == 2
        assert "disk I/O error" in (store.last_error or "")
    with SqliteStore(tmp_path) as reopened:
        assert reopened.find("s", "p", "kept") is not None
        assert reopened.find("s", "p", "after") == after
        assert reopened.find("s", "p", "lost") is None


def test_a_store_that_cannot_commit_fails_writes_at_once_then_recovers(tmp_path: Path) -> None:
    faults = Faults()
    with FaultyStore(tmp_path, faults) as store:
        store.insert("s", "p", "before", 0.5, vec(1))
        faults.fail = ("INSERT", "COMMIT", "BEGIN")  # every write and every probe
        with pytest.raises(StoreError, match="could not commit"):
            store.insert("s", "p", "x", 0.5, vec(2))
        ok, detail = store.health()
        assert not ok and "cannot commit" in detail
        # Failed: refused before it is queued, so no write waits on the writer.
        with pytest.raises(StoreError, match="cannot write"):
            store.insert("s", "p", "y", 0.5, vec(3))
        faults.fail = ()
        eventually(lambda: store.health()[0])
        _, created = store.insert("s", "p", "z", 0.5, vec(4))
        assert created and store.count() == 2


def test_a_failed_sync_is_survived(tmp_path: Path) -> None:
    faults = Faults()
    with FaultyStore(tmp_path, faults, durability="interval", sync_interval=0.01) as store:
        store.insert("s", "p", "a", 0.5, vec(1))
        faults.fail, faults.times = ("PRAGMA SYNCHRONOUS=FULL",), 1
        eventually(lambda: store.last_error is not None)
        eventually(lambda: store.health()[0])
        _, created = store.insert("s", "p", "b", 0.5, vec(2))
        assert created and store.count() == 2


def test_a_write_waits_at_most_write_timeout(tmp_path: Path) -> None:
    faults = Faults()
    with FaultyStore(tmp_path, faults, write_timeout=0.2) as store:
        faults.entered.clear()
        faults.gate.clear()  # the writer hangs in its next statement
        outcomes: list[str] = []

        def hung_write() -> None:
            try:
                store.insert("s", "p", "a", 0.5, vec(1))
            except StoreTimeoutError as e:
                outcomes.append(str(e))

        first = threading.Thread(target=hung_write)
        first.start()
        assert faults.entered.wait(30)
        with pytest.raises(StoreTimeoutError, match="was not written"):
            store.insert("s", "p", "b", 0.5, vec(2))
        first.join(30)
        assert not first.is_alive() and "may still commit" in outcomes[0]
        faults.gate.set()
        _, created = store.insert("s", "p", "c", 0.5, vec(3))
        assert created
        assert store.find("s", "p", "b") is None, "a withdrawn write never commits"


# The writer dies of an exception it cannot handle: the thread's traceback is expected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_writes_fail_fast_once_the_writer_is_dead(tmp_path: Path) -> None:
    class Fatal(BaseException):
        pass

    faults = Faults()
    store = FaultyStore(tmp_path, faults)
    faults.fail, faults.error = ("INSERT",), Fatal
    with pytest.raises(StoreError, match="writer stopped"):
        store.insert("s", "p", "a", 0.5, vec(1))
    assert not store.health()[0]
    with pytest.raises(StoreError, match="writer"):
        store.insert("s", "p", "b", 0.5, vec(2))
    store.close()


def test_a_disk_that_refuses_writes(tmp_path: Path) -> None:
    """A real fault: the child's file size limit stops the log from growing. Writes fail
    with StoreError (none hangs, none is acknowledged and lost), then succeed again once
    the limit is lifted."""
    child = subprocess.run(
        [sys.executable, str(HERE / "store_full_disk.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    acked = [int(line.split()[1]) for line in child.stdout.splitlines() if line.startswith("ack")]
    assert "refused" in child.stdout and "recovered" in child.stdout, child.stdout
    with SqliteStore(tmp_path) as store:
        assert set(store.get_many(acked)) == set(acked)
