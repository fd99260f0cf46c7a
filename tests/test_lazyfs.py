"""The power-loss filesystem itself (``lazyfs.py``): reads see every write, fsync puts a
file's writes on the backing disk, a cut loses the rest and refuses later writes, a
shared writable mmap works (SQLite's WAL index needs it), and the ``full`` switch."""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from powerlib import LazyMount, require_fuse


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[LazyMount]:
    require_fuse()
    with LazyMount(tmp_path) as mount:
        yield mount


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_what_was_not_fsynced_is_lost_at_the_cut(disk: LazyMount) -> None:
    synced, unsynced = disk.mountpoint / "synced", disk.mountpoint / "unsynced"
    synced.write_bytes(b"x" * 10_000)
    fsync(synced)
    with open(synced, "r+b") as f:
        f.seek(5_000)
        f.write(b"y" * 100)
    unsynced.write_bytes(b"never synced")
    # Reads see the writes; the backing disk has only what was fsynced.
    assert synced.read_bytes() == b"x" * 5_000 + b"y" * 100 + b"x" * 4_900
    assert unsynced.read_bytes() == b"never synced"
    assert (disk.backing / "synced").read_bytes() == b"x" * 10_000
    assert (disk.backing / "unsynced").read_bytes() == b""

    disk.cut()
    with pytest.raises(OSError) as refused, open(synced, "r+b") as f:
        f.write(b"late")
        f.flush()
    assert refused.value.errno == errno.EIO
    disk.stop()
    assert (disk.backing / "synced").read_bytes() == b"x" * 10_000
    assert (disk.backing / "unsynced").read_bytes() == b""


def test_truncate_then_extend_reads_zeros_and_fsyncs_as_read(disk: LazyMount) -> None:
    path = disk.mountpoint / "f"
    path.write_bytes(b"x" * 10_000)
    fsync(path)
    os.truncate(path, 3_000)
    with open(path, "r+b") as f:
        f.seek(6_000)
        f.write(b"z")
    expected = b"x" * 3_000 + bytes(3_000) + b"z"
    assert path.read_bytes() == expected
    assert (disk.backing / "f").read_bytes() == b"x" * 10_000
    fsync(path)
    assert (disk.backing / "f").read_bytes() == expected


def test_shared_writable_mmap_reaches_the_disk_on_fsync(disk: LazyMount) -> None:
    path = disk.mountpoint / "shm"
    with open(path, "w+b") as f:
        f.truncate(2 * mmap.PAGESIZE)
        with mmap.mmap(f.fileno(), 2 * mmap.PAGESIZE) as mm:
            mm[100:105] = b"hello"
            mm.flush()  # msync: the kernel writes the page back through the filesystem
        os.fsync(f.fileno())
    assert (disk.backing / "shm").read_bytes()[100:105] == b"hello"


def test_full_refuses_writes_that_need_space(disk: LazyMount) -> None:
    path = disk.mountpoint / "f"
    path.write_bytes(b"x" * 100)
    disk.command("full")
    assert os.statvfs(disk.mountpoint).f_bavail == 0
    with open(path, "r+b", buffering=0) as f:
        f.write(b"y" * 100)  # overwriting what the file has needs no space
        with pytest.raises(OSError) as full:
            f.write(b"more")
    assert full.value.errno == errno.ENOSPC
    disk.command("space")
    with open(path, "ab") as f:
        f.write(b"more")
    assert path.read_bytes() == b"y" * 100 + b"more"
