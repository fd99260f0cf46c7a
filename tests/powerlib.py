"""The power-loss disk for tests: a ``lazyfs.py`` daemon mounted over a backing directory,
driven through its control socket, stopped by its pid and ``fusermount3 -u``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def fuse_available() -> str | None:
    """Why FUSE cannot be used here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "fusermount3 not installed (apt-get install fuse3; .ci/run does it)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:  # OSError: libfuse3 itself is missing
        return f"mfusepy unusable: {e}"
    return None


def require_fuse() -> None:
    reason = fuse_available()
    if reason is not None:
        pytest.skip(reason)


class LazyMount:
    """``mountpoint`` shows ``backing`` through the lazy filesystem; ``backing`` is what a
    reboot after a ``cut`` finds."""

    def __init__(self, root: Path, name: str = "disk") -> None:
        self.backing = root / f"{name}-backing"
        self.mountpoint = root / f"{name}-mnt"
        self.control = root / f"{name}.sock"
        self.log_path = root / f"{name}-lazyfs.log"
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> LazyMount:
        self.control.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "lazyfs.py"),
                    str(self.backing),
                    str(self.mountpoint),
                    str(self.control),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not (os.path.ismount(self.mountpoint) and self.control.exists()):
            if self.proc.poll() is not None:
                raise RuntimeError(f"lazyfs exited with {self.proc.returncode}:\n{self.logs()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"lazyfs not mounted after {timeout}s:\n{self.logs()}")
            time.sleep(0.02)
        self.command("ping")
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def command(self, line: str, timeout: float = 30.0) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.control))
            s.sendall(line.encode() + b"\n")
            answer = s.makefile().readline().strip()
        if answer != "ok":
            raise RuntimeError(f"lazyfs answered {answer!r} to {line!r}")

    def cut(self) -> None:
        """Power loss: what was not fsynced is gone, and no later write reaches the disk."""
        self.command("cut")

    def stop(self, timeout: float = 30.0) -> None:
        """Unmount (lazily if something still has a file open) and wait for the daemon,
        which ends when its mount goes; killed by its pid if it does not."""
        if self.proc is None:
            return
        if os.path.ismount(self.mountpoint):
            done = subprocess.run(
                ["fusermount3", "-u", str(self.mountpoint)], capture_output=True, check=False
            )
            if done.returncode != 0:
                subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> LazyMount:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
