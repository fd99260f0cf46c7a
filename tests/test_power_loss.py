"""Power loss, not just kill -9: the data directory is on ``lazyfs`` (see ``lazyfs.py``),
which keeps what was not fsynced in memory and drops it at the cut. Each cycle: writers
run, the writing process is killed with SIGKILL at a random point, the power is cut, and
the backing directory (the disk after a reboot) is opened again.

- ``durability="fsync"``: every acknowledged write survives, for the store alone and for
  a real server, and the engine starts consistent.
- ``durability="interval"``: whatever was acknowledged more than ``sync_interval`` (plus a
  margin) before the writing stopped survives, and the engine starts consistent.
- With SQLite's syncs turned off the same cycle loses acknowledged writes: the harness
  does catch a missing fsync.

The random cut points come from one seed, printed (and named in every failure);
``LLMKG_POWER_SEED`` repeats a run.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pytest
from powerlib import HERE, LazyMount, require_fuse
from powerserver import ServerCycle

from llmkg.store import SqliteStore

SEED = int(os.environ.get("LLMKG_POWER_SEED") or random.randrange(2**32))
SYNC_INTERVAL = 0.3
SERVER_SYNC_INTERVAL = 1.0
# Scheduling slack of the interval sync on a loaded machine, on top of sync_interval.
MARGIN = 1.0


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    print(f"power-loss seed {SEED} (LLMKG_POWER_SEED={SEED} repeats it)")
    return random.Random(f"{SEED}-{request.node.name}")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[LazyMount]:
    require_fuse()
    mount = LazyMount(tmp_path)
    try:
        yield mount
    finally:
        mount.stop()


# node id -> (subject, object, monotonic time of the acknowledgement)
Written = dict[int, tuple[str, str, float]]


class Acks:
    """Acknowledged writes as a child prints them: ``ack <node id> <subject> <i> <time>``."""

    def __init__(self, stream: IO[str]) -> None:
        self.items: Written = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.startswith("ack "):
                _, node_id, subject, i, acked = line.split()
                with self.lock:
                    self.items[int(node_id)] = (subject, f"fact {i}", float(acked))

    def wait(self, enough: Callable[[Written], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if enough(self.items):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"writer never reached {what}")
            time.sleep(0.01)


def count_reached(count: int) -> Callable[[int, float], bool]:
    return lambda acknowledged, seconds: acknowledged >= count


def span_reached(wanted: float) -> Callable[[int, float], bool]:
    return lambda acknowledged, seconds: seconds >= wanted


def span(items: Written) -> float:
    times = [t for _, _, t in items.values()]
    return max(times) - min(times) if times else 0.0


def store_cycle(
    disk: LazyMount, rng: random.Random, run: int, durability: str, sync_off: bool = False
) -> tuple[Written, float]:
    """One writer on the lazy disk, killed, then the power cut: (acks, time of the kill)."""
    disk.start()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent / "python")])}
    if sync_off:
        env["LLMKG_TEST_SYNCHRONOUS_OFF"] = "1"
    child = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "store_writer.py"),
            str(disk.mountpoint),
            durability,
            str(SYNC_INTERVAL),
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        acks = Acks(child.stdout)
        if durability == "interval":
            # Long enough that some writes are older than the loss window.
            wanted = SYNC_INTERVAL + MARGIN + rng.uniform(0.2, 1.5)
            acks.wait(lambda items: span(items) >= wanted, f"{wanted:.2f}s of writes")
        else:
            wanted_count = rng.randint(20, 400)
            acks.wait(lambda items: len(items) >= wanted_count, f"{wanted_count} writes")
        killed_at = time.monotonic()
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    acks.thread.join(timeout=30)
    assert child.stdout is not None
    child.stdout.close()
    disk.cut()
    disk.stop()
    return acks.items, killed_at


def lost_in(directory: Path, acked: Written) -> list[int]:
    with SqliteStore(directory) as store:
        lost = [
            n
            for n, (subject, obj, _) in acked.items()
            if (r := store.get(n)) is None or (r.subject, r.object) != (subject, obj)
        ]
        # The store takes new writes after the reboot.
        record, created = store.insert("after", "reboot", f"{len(acked)}", 0.5, np.ones(8))
        assert created and store.get(record.node_id) is not None
    db = sqlite3.connect(directory / "llmkg.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    return lost


def test_store_fsync_keeps_every_acknowledged_write(disk: LazyMount, rng: random.Random) -> None:
    for run in range(3):
        acked, _ = store_cycle(disk, rng, run, "fsync")
        lost = lost_in(disk.backing, acked)
        assert not lost, f"seed {SEED}, cycle {run}: {len(lost)} of {len(acked)} lost: {lost[:10]}"


def test_harness_catches_a_missing_fsync(disk: LazyMount, rng: random.Random) -> None:
    """The same cycle with SQLite's syncs off: acknowledged writes are lost, so the tests
    above would fail if the store stopped syncing."""
    acked, _ = store_cycle(disk, rng, 0, "fsync", sync_off=True)
    lost = lost_in(disk.backing, acked)
    assert acked and lost, f"seed {SEED}: nothing of {len(acked)} unsynced writes was lost"


def test_store_interval_loses_at_most_the_last_sync_interval(
    disk: LazyMount, rng: random.Random
) -> None:
    for run in range(2):
        acked, killed_at = store_cycle(disk, rng, run, "interval")
        lost = set(lost_in(disk.backing, acked))
        old = [n for n, (_, _, t) in acked.items() if t < killed_at - SYNC_INTERVAL - MARGIN]
        assert old, f"seed {SEED}, cycle {run}: no write older than the loss window"
        print(f"seed {SEED}, cycle {run}: {len(acked)} acknowledged, {len(lost)} lost")
        old_lost = [n for n in old if n in lost]
        assert not old_lost, (
            f"seed {SEED}, cycle {run}: {len(old_lost)} writes acknowledged more than "
            f"{SYNC_INTERVAL + MARGIN}s before the cut were lost: {old_lost[:10]}"
        )


def test_server_fsync_keeps_every_acknowledged_allocation(
    disk: LazyMount, rng: random.Random
) -> None:
    cycle = ServerCycle(disk, rng, SEED, durability="fsync")
    for run in range(2):
        wanted = rng.randint(30, 300)
        acked, _ = cycle.write_kill_cut(run, until=count_reached(wanted))
        cycle.check_after_reboot(run, acked, must_survive=set(acked))


def test_server_interval_loses_at_most_the_last_sync_interval(
    disk: LazyMount, rng: random.Random
) -> None:
    window = SERVER_SYNC_INTERVAL + MARGIN
    cycle = ServerCycle(disk, rng, SEED, durability="interval", sync_interval=SERVER_SYNC_INTERVAL)
    for run in range(2):
        wanted = window + rng.uniform(0.5, 2.0)
        # The second cut comes right after an index snapshot, before the store's next
        # sync: after the reboot the snapshot holds writes that the store lost, and the
        # engine must not trust it as it is.
        acked, killed_at = cycle.write_kill_cut(
            run, until=span_reached(wanted), after_checkpoint=run == 1
        )
        old = {n for n, (_, t) in acked.items() if t < killed_at - window}
        assert old, f"seed {SEED}, cycle {run}: no allocation older than the loss window"
        cycle.check_after_reboot(run, acked, must_survive=old)
