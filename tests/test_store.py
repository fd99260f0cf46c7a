"""The SQLite store: group commit, lone writes, backups, failing writes in a batch, and
durability of acknowledged writes across kill -9 of the writing process. What every
store does alike (inserts, sequences, tombstones, lookups) is in test_store_backends.py."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from llmkg.store import SqliteStore

HERE = Path(__file__).parent


def vec(x: float) -> np.ndarray:
    return np.full(4, x, dtype=np.float32)


def test_a_lone_write_commits_alone_and_its_row_carries_the_sequence(tmp_path: Path) -> None:
    with SqliteStore(tmp_path) as store:
        a, _ = store.insert("Pho", "is_a", "dog", 0.5, vec(1))
        # Not a delete: it re-parents the children in the same transaction.
        assert store.raise_confidence(a.node_id, 0.9) is not None
        assert store.commits == 2 and store.writes == 2
        path = store.path
    with sqlite3.connect(path) as conn:
        meta = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        seqs = conn.execute("SELECT seq FROM nodes").fetchall()
    assert meta is None, "one statement alone needs no BEGIN, COMMIT or last_seq row"
    assert seqs == [(2,)]
    with SqliteStore(tmp_path) as reopened:
        assert reopened.last_seq == 2


def test_concurrent_writers_share_commits(tmp_path: Path) -> None:
    with SqliteStore(tmp_path) as store:

        def write(t: int) -> None:
            for i in range(50):
                store.insert(f"t{t}", "n", str(i), 0.5, vec(i))

        threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert store.count() == 400 and store.writes == 400
        assert store.commits < 400, "group commit: concurrent writes share transactions"
        assert store.last_seq == 400


def test_backup_is_a_consistent_copy(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "a") as store:
        for i in range(10):
            store.insert("s", "p", str(i), 0.5, vec(i))
        (tmp_path / "b").mkdir()
        store.backup_to(tmp_path / "b" / "llmkg.sqlite3")
    with SqliteStore(tmp_path / "b") as copy:
        assert copy.count() == 10 and copy.last_seq == 10


def test_an_unknown_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        SqliteStore(tmp_path, durability="never")


@pytest.mark.parametrize("durability", ["fsync", "interval"])
def test_acknowledged_writes_survive_kill_9(tmp_path: Path, durability: str) -> None:
    acked: dict[int, tuple[str, str]] = {}
    for run in range(3):
        child = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "store_writer.py"),
                str(tmp_path),
                durability,
                "0.05",
                str(run),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(HERE.parent / "python")},
        )
        assert child.stdout is not None
        seen = 0
        for line in child.stdout:
            if not line.startswith("ack "):
                continue
            _, node_id, subject, i, _ = line.split()
            acked[int(node_id)] = (subject, f"fact {i}")
            seen += 1
            if seen >= 200 + 100 * run:
                break
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        with SqliteStore(tmp_path) as store:
            found = store.get_many(acked)
            missing = [n for n in acked if n not in found]
            assert not missing, f"run {run}: acknowledged writes lost after kill -9: {missing[:10]}"
            # A lone write commits without the ``last_seq`` row: the rows carry it.
            assert store.last_seq == max(c.seq for c in store.changes_after(0))
            for node_id, (subject, obj) in acked.items():
                assert (found[node_id].subject, found[node_id].object) == (subject, obj)
