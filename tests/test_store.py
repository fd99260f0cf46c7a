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
import time
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


def test_a_new_fact_is_one_statement_and_a_known_one_takes_no_sequence(
    tmp_path: Path,
) -> None:
    with SqliteStore(tmp_path) as store:
        statements: list[str] = []
        store._writer.set_trace_callback(statements.append)
        a, created = store.insert("Pho", "is_a", "dog", 0.5, vec(1))
        assert created and len(statements) == 1, statements
        b, created = store.insert("Rex", "is_a", "dog", 0.5, vec(2), parent=a.node_id)
        assert created and b.parent == a.node_id and len(statements) == 2, statements
        # Committed when it returns (a statement left half-run would hold its write back).
        other = sqlite3.connect(store.path)
        assert other.execute("SELECT count(*) FROM nodes").fetchone() == (2,)
        other.close()
        again, created = store.insert("Pho", "is_a", "dog", 0.4, vec(1))
        assert not created and again.node_id == a.node_id and again.seq == a.seq
        c, _ = store.insert("Tom", "is_a", "cat", 0.5, vec(3))
        assert c.seq == b.seq + 1, "the known triple gave its sequence back"
        store._writer.set_trace_callback(None)


def test_a_failing_write_in_a_batch_leaves_the_others_and_their_sequences(
    tmp_path: Path,
) -> None:
    # "interval": a sync() is then a write of the batch too.
    with SqliteStore(tmp_path, durability="interval") as store:
        started, release = threading.Event(), threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            started.set()
            release.wait(30)

        def refuse(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE nodes SET reads = 99")  # undone with the operation
            raise ValueError("refused")

        holder = threading.Thread(target=store._submit, args=(hold,))
        holder.start()
        assert started.wait(30)
        results: dict[str, object] = {}
        calls = {
            "a": lambda: store.insert("a", "p", "o", 0.5, vec(1)),
            "sync": store.sync,
            "bad": lambda: store._submit(refuse),
            "b": lambda: store.insert("b", "p", "o", 0.5, vec(2)),
        }

        def run(name: str) -> None:
            try:
                results[name] = calls[name]()
            except Exception as e:
                results[name] = e

        threads = [threading.Thread(target=run, args=(name,)) for name in calls]
        for t in threads:  # queued behind the held write: one batch
            t.start()
            deadline = time.monotonic() + 30
            while store._queue.qsize() < threads.index(t) + 1:
                assert time.monotonic() < deadline
                time.sleep(0.001)
        release.set()
        for t in [holder, *threads]:
            t.join(30)
        assert isinstance(results["bad"], ValueError) and results["sync"] is None
        (a, _), (b, _) = results["a"], results["b"]  # type: ignore[misc]
        assert sorted([a.seq, b.seq]) == [1, 2] and store.last_seq == 2
        assert store.writes == 5 and store.failed_writes == 0  # with the held one
        assert store.last_error is None
    with SqliteStore(tmp_path) as reopened:
        assert {r.subject for r in reopened.get_many([a.node_id, b.node_id]).values()} == {"a", "b"}
        assert reopened.last_seq == 2 and reopened.get(a.node_id).reads == 0


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
