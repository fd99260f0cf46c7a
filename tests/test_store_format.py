"""On-disk formats: the store's version and migrations, stores written by earlier formats
(fixtures in tests/fixtures, made by make_store_fixture.py), the refusal of newer formats,
and damaged files found at start instead of by requests later."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from serverlib import Server

from llmkg._core import CorruptIndexError, HnswIndex
from llmkg.engine import AllocationEngine, EngineConfig
from llmkg.store import SqliteStore, StoreCorruptError, StoreVersionError
from llmkg.store.schema import FORMAT_VERSION

FIXTURES = Path(__file__).parent / "fixtures"
HERE = Path(__file__).parent


def vec(x: float) -> np.ndarray:
    return np.full(4, x, dtype=np.float32)


def copy_fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


@pytest.mark.parametrize("name", ["store-format0", "store-format1"])
def test_a_store_of_each_format_opens_with_its_facts(name: str, tmp_path: Path) -> None:
    """The fixture's facts (make_store_fixture.py): ids 1..12, id 5 deleted, id 2 raised to
    confidence 0.99. Format 0 is migrated in place; its snapshot, which names no store, is
    not loaded (the index is rebuilt once); format 1's snapshot is."""
    data = copy_fixture(name, tmp_path)
    config = EngineConfig(data_directory=data, dim=8, checkpoint_interval=0)
    with AllocationEngine(config) as engine:
        assert engine.startup["source"] == ("rebuild" if name.endswith("0") else "snapshot")
        assert engine.store.count() == len(engine.index) == 11
        assert engine.get(5) is None
        node = engine.get(2)
        assert node is not None and (node.subject, node.confidence) == ("entity2", 0.99)
        hit = engine.search(embedding=[0, 0, 0, 1, 0.5, 0, 0, 0], k=1)[0]
        assert hit.node_id == 3 and hit.node.subject == "entity3"
        # Format 1's snapshot kept codes only: the quantized nodes got their full rows
        # back from the store, so that the core rescores them exactly.
        assert engine.index.keep_full
        stored = engine.store.get(3)
        assert stored is not None
        again = engine.search(embedding=stored.embedding.tolist(), k=1)[0]
        assert again.node_id == 3 and again.score == pytest.approx(1.0, abs=1e-6)
        store_id = engine.store.store_id
        assert (
            engine.allocate(
                {"subject": "new", "predicate": "p", "object": "o", "confidence": 0.5}
            ).node_id
            == 13
        )
    with sqlite3.connect(data / "llmkg.sqlite3") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
    with AllocationEngine(config) as engine:
        assert engine.startup["source"] == "snapshot" and engine.store.store_id == store_id


def test_a_store_keeps_its_id_and_a_new_store_gets_another(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "a") as a, SqliteStore(tmp_path / "b") as b:
        first = a.store_id
        assert len(first) == 32 and first != b.store_id
    with SqliteStore(tmp_path / "a") as a:
        assert a.store_id == first


def test_a_store_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    with SqliteStore(tmp_path) as store:
        store.insert("Pho", "is_a", "dog", 0.5, vec(1))
    with sqlite3.connect(tmp_path / "llmkg.sqlite3") as conn:
        conn.execute(f"PRAGMA user_version={FORMAT_VERSION + 1}")
    with pytest.raises(
        StoreVersionError, match=rf"llmkg\.sqlite3 has store format {FORMAT_VERSION + 1}.*newer"
    ):
        SqliteStore(tmp_path)


def test_an_index_file_of_a_newer_format_is_refused() -> None:
    index = HnswIndex(4)
    index.add([1, 2], np.eye(2, 4, dtype=np.float32))
    data = bytearray(index.to_bytes())
    data[8:12] = (2).to_bytes(4, "little")  # the version, after the 8-byte magic
    data[-4:] = zlib.crc32(bytes(data[:-4])).to_bytes(4, "little")
    with pytest.raises(CorruptIndexError, match="unsupported format version 2"):
        HnswIndex.from_bytes(bytes(data))


def test_a_clean_close_is_recorded(tmp_path: Path) -> None:
    def clean_close() -> int:
        with sqlite3.connect(tmp_path / "llmkg.sqlite3") as conn:
            return conn.execute("SELECT value FROM meta WHERE key='clean_close'").fetchone()[0]

    with SqliteStore(tmp_path):
        assert clean_close() == 0
    assert clean_close() == 1


def damage_a_page(path: Path) -> None:
    """Scribble over the middle of the file: a b-tree page of the nodes or their index."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\xa5" * 4096)


def test_damage_is_found_at_open_after_an_unclean_end(tmp_path: Path) -> None:
    """A writer killed with -9 never marks a clean close: the next open checks the file."""
    writer = subprocess.Popen(
        [sys.executable, str(HERE / "store_writer.py"), str(tmp_path), "fsync", "1", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "ready\n"
        for _ in range(2000):  # acknowledged writes: enough pages to damage one
            assert writer.stdout.readline().startswith("ack ")
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    with SqliteStore(tmp_path) as store:  # undamaged: the check passes
        assert store.count() >= 2000
        store._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with sqlite3.connect(tmp_path / "llmkg.sqlite3") as conn:
        conn.execute("UPDATE meta SET value=0 WHERE key='clean_close'")
    damage_a_page(tmp_path / "llmkg.sqlite3")
    with pytest.raises(StoreCorruptError, match=r"llmkg\.sqlite3 is (damaged|not a readable)"):
        SqliteStore(tmp_path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "llmkg.sqlite3").write_bytes(b"not a database" * 500)
    with pytest.raises(StoreCorruptError, match=r"llmkg\.sqlite3 is not a readable llmkg store"):
        SqliteStore(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "newer"])
def test_the_server_exits_2_naming_an_unusable_store(tmp_path: Path, damage: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    if damage == "garbage":
        (data / "llmkg.sqlite3").write_bytes(b"\x00garbage" * 1000)
    else:
        with SqliteStore(data):
            pass
        with sqlite3.connect(data / "llmkg.sqlite3") as conn:
            conn.execute("PRAGMA user_version=99")
    server = Server(tmp_path).start(wait=None)
    assert server.proc is not None
    code = server.proc.wait(60)
    server.stop()
    assert code == 2, server.logs()
    assert f"{data / 'llmkg.sqlite3'}" in server.logs()
    assert "Traceback" not in server.logs()
