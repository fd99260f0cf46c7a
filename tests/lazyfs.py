"""A FUSE filesystem that forgets what was not fsynced: the power-loss disk of the tests.

``python lazyfs.py BACKING MOUNTPOINT CONTROL_SOCKET`` mounts BACKING at MOUNTPOINT. Data
writes and truncates are not applied to the backing file: they are kept in memory, per
file, as an overlay of dirty pages, the file's size and a pending truncate (the offset past
which the backing bytes no longer count). Reads merge the overlay over the backing file.
``fsync``/``fdatasync`` of a file writes its overlay to the backing file and fsyncs it.

Commands on the control socket (one line in, ``ok`` out once done):

- ``cut``: power loss. Every overlay is dropped, and every later write, truncate, fsync
  and metadata change fails with EIO (so is the kernel's late writeback of mmap pages,
  e.g. SQLite's ``-shm``). The backing directory is then the disk after the reboot.
- ``full`` / ``space``: until ``space``, writes that need space (past a file's end, or
  an extending truncate) fail with ENOSPC, as on a full disk, where overwriting blocks a
  file already has still works; ``statfs`` shows no free space.
- ``ping``.

Not modelled: the durability of directory entries. Create, rename, unlink, mkdir and
rmdir pass through to the backing directory at once (as if every directory were fsynced
right away), and a file's overlay follows it through a rename. Files are mounted without
``direct_io``, so shared writable mmaps (SQLite's WAL index) work.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import mfusepy
from mfusepy import FUSE, FuseOSError, Operations

PAGE = 4096


@dataclass
class Overlay:
    """What a file holds beyond its backing file until the next fsync."""

    size: int  # the file's size as its users see it
    floor: int  # backing bytes at or past this offset read as zeros (a pending truncate)
    pages: dict[int, bytearray] = field(default_factory=dict)  # page number -> PAGE bytes


class LazyFS(Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, root: str) -> None:
        self.root = root
        self.mutex = threading.RLock()
        self.overlays: dict[str, Overlay] = {}
        self.cut = False
        self.full = False

    def _real(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def _writable(self, needs_space: bool = False) -> None:
        if self.cut:
            raise FuseOSError(errno.EIO)
        if needs_space and self.full:
            raise FuseOSError(errno.ENOSPC)

    # ---- the overlay ---------------------------------------------------------------------

    def _base(self, path: str, offset: int, n: int, floor: int) -> bytearray:
        """``n`` bytes of the backing file from ``offset``: zeros past its end and past
        ``floor``."""
        out = bytearray(n)
        stop = min(offset + n, floor)
        if stop > offset:
            fd = os.open(self._real(path), os.O_RDONLY)
            try:
                got = os.pread(fd, stop - offset, offset)
            finally:
                os.close(fd)
            out[: len(got)] = got
        return out

    def _overlay(self, path: str) -> Overlay:
        ov = self.overlays.get(path)
        if ov is None:
            size = os.stat(self._real(path)).st_size
            ov = self.overlays[path] = Overlay(size=size, floor=size)
        return ov

    def _page(self, path: str, ov: Overlay, number: int) -> bytearray:
        page = ov.pages.get(number)
        if page is None:
            page = ov.pages[number] = self._base(path, number * PAGE, PAGE, ov.floor)
        return page

    def _persist(self, path: str, ov: Overlay) -> None:
        fd = os.open(self._real(path), os.O_WRONLY)
        try:
            if ov.floor < os.fstat(fd).st_size:
                os.ftruncate(fd, ov.floor)
            for number, page in sorted(ov.pages.items()):
                n = min(PAGE, ov.size - number * PAGE)
                if n > 0:
                    os.pwrite(fd, bytes(page[:n]), number * PAGE)
            os.ftruncate(fd, ov.size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def power_cut(self) -> None:
        with self.mutex:
            self.cut = True
            self.overlays.clear()

    # ---- files -------------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.lstat(self._real(path))
        attrs = {
            key: getattr(st, key)
            for key in (
                "st_mode",
                "st_nlink",
                "st_uid",
                "st_gid",
                "st_size",
                "st_atime_ns",
                "st_mtime_ns",
                "st_ctime_ns",
            )
        }
        for key in ("st_atime", "st_mtime", "st_ctime"):
            attrs[key] = attrs.pop(key + "_ns")
        with self.mutex:
            ov = self.overlays.get(path)
            if ov is not None:
                attrs["st_size"] = ov.size
        return attrs

    def open(self, path: str, flags: int) -> int:
        if flags & os.O_TRUNC:
            self.truncate(path, 0)
        return 0

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        self._writable()
        os.close(os.open(self._real(path), os.O_WRONLY | os.O_CREAT, mode))
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self.mutex:
            ov = self.overlays.get(path)
            if ov is None:
                fd = os.open(self._real(path), os.O_RDONLY)
                try:
                    return os.pread(fd, size, offset)
                finally:
                    os.close(fd)
            end = min(offset + size, ov.size)
            if end <= offset:
                return b""
            out = self._base(path, offset, end - offset, ov.floor)
            for number in range(offset // PAGE, (end - 1) // PAGE + 1):
                page = ov.pages.get(number)
                if page is not None:
                    start = max(offset, number * PAGE)
                    stop = min(end, (number + 1) * PAGE)
                    out[start - offset : stop - offset] = page[
                        start - number * PAGE : stop - number * PAGE
                    ]
            return bytes(out)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        self._writable()
        with self.mutex:
            self._writable()  # a cut may have come while waiting
            ov = self._overlay(path)
            self._writable(needs_space=offset + len(data) > ov.size)
            pos, end = offset, offset + len(data)
            while pos < end:
                number = pos // PAGE
                page = self._page(path, ov, number)
                start = pos - number * PAGE
                n = min(PAGE - start, end - pos)
                page[start : start + n] = data[pos - offset : pos - offset + n]
                pos += n
            ov.size = max(ov.size, end)
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        self._writable()
        with self.mutex:
            self._writable()
            ov = self._overlay(path)
            if length > ov.size and self.full:
                raise FuseOSError(errno.ENOSPC)
            if length < ov.size:
                ov.floor = min(ov.floor, length)
                for number in [n for n in ov.pages if n * PAGE >= length]:
                    del ov.pages[number]
                last = ov.pages.get(length // PAGE)
                if last is not None:
                    cut_at = length % PAGE
                    last[cut_at:] = bytes(PAGE - cut_at)
            ov.size = length
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self._writable()
        with self.mutex:
            self._writable()
            ov = self.overlays.pop(path, None)
            if ov is not None:
                self._persist(path, ov)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close() is no fsync

    def release(self, path: str, fh: int) -> int:
        return 0

    def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
        # Only the plain "make room" call: it extends the size like a truncate would.
        if mode != 0:
            raise FuseOSError(errno.EOPNOTSUPP)
        with self.mutex:
            if offset + size > self._overlay(path).size:
                self.truncate(path, offset + size)
        return 0

    # ---- metadata: passed through (directory entries are not modelled) ------------------

    def rename(self, old: str, new: str) -> int:
        self._writable()
        with self.mutex:
            os.rename(self._real(old), self._real(new))
            self.overlays.pop(new, None)
            moved = self.overlays.pop(old, None)
            if moved is not None:
                self.overlays[new] = moved
        return 0

    def unlink(self, path: str) -> int:
        self._writable()
        with self.mutex:
            os.unlink(self._real(path))
            self.overlays.pop(path, None)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self._writable()
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        self._writable()
        os.rmdir(self._real(path))
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def chmod(self, path: str, mode: int) -> int:
        self._writable()
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        self._writable()
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        self._writable()
        if times is None:
            os.utime(self._real(path))
        else:
            os.utime(self._real(path), ns=times)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        self._writable()
        return 0  # entries are already in the backing directory

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        free = ("f_bfree", "f_bavail")
        return {
            key: 0 if self.full and key in free else getattr(st, key)
            for key in (
                "f_bsize",
                "f_frsize",
                "f_blocks",
                "f_bfree",
                "f_bavail",
                "f_files",
                "f_ffree",
                "f_favail",
                "f_flag",
                "f_namemax",
            )
        }


def serve_control(fs: LazyFS, path: str) -> None:
    """Answer the commands of the module docstring, one connection at a time."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bound under another name and renamed once listening: a client that sees the path
    # (the tests wait for it) can connect, never "connection refused" between the two.
    pending = f"{path}.{os.getpid()}"
    server.bind(pending)
    server.listen(4)
    os.replace(pending, path)
    actions = {
        "cut": fs.power_cut,
        "full": lambda: setattr(fs, "full", True),
        "space": lambda: setattr(fs, "full", False),
        "ping": lambda: None,
    }
    while True:
        conn, _ = server.accept()
        with conn, conn.makefile("rw") as stream:
            for line in stream:
                action = actions.get(line.strip())
                if action is None:
                    stream.write("unknown command\n")
                else:
                    action()
                    stream.write("ok\n")
                stream.flush()


def main(backing: str, mountpoint: str, control: str) -> None:
    fs = LazyFS(os.path.abspath(backing))
    threading.Thread(target=serve_control, args=(fs, control), daemon=True).start()
    # Multithreaded: SQLite's writer, its readers and the kernel's writeback run at once.
    FUSE(fs, mountpoint, foreground=True, nothreads=False, fsname="lazyfs")


if __name__ == "__main__":
    mfusepy.log.setLevel("WARNING")
    main(*sys.argv[1:4])
