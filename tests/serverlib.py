"""A real llmkg-server process for tests: free ports, a temporary data directory, config
by environment variables, captured logs, and waits on its probes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
SERVER = [sys.executable, "-m", "llmkg.server.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``env``: extra environment (``LLMKG__...`` keys); ``args``: extra CLI arguments;
    ``command``: what runs instead of ``llmkg-server`` (e.g. with faults injected).
    Small, fast defaults for tests: dim 16, no drain delay, fsync durability."""

    def __init__(
        self,
        tmp: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        *,
        dim: int = 16,
        scheme: str = "http",
        verify: Any = False,
        cert: Any = None,
        command: list[str] | None = None,
    ) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.http_port, self.metrics_port = free_port(), free_port()
        self.data = tmp / "data"
        self.log_path = tmp / f"server-{self.http_port}.log"
        self.env = {
            **os.environ,
            "LLMKG__SERVER__HTTP_PORT": str(self.http_port),
            "LLMKG__SERVER__METRICS_PORT": str(self.metrics_port),
            "LLMKG__SERVER__DRAIN_DELAY": "0s",
            "LLMKG__STORAGE__DATA_DIRECTORY": str(self.data),
            "LLMKG__STORAGE__BACKUP_DIRECTORY": str(tmp / "backups"),
            "LLMKG__SCALABILITY__HNSW__DIMENSION": str(dim),
            "LLMKG__PERFORMANCE__WORKER_THREADS": "4",
            **(env or {}),
        }
        self.env.pop("LLMKG_CONFIG_PATH", None)
        self.env.pop("LLMKG_ENVIRONMENT", None)
        self.args = args or []
        self.command = command or SERVER
        self.url = f"{scheme}://127.0.0.1:{self.http_port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}"
        self.client = httpx.Client(base_url=self.url, timeout=30, verify=verify, cert=cert)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: str | None = "ready") -> Server:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.command, *self.args], env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        if wait:
            self.wait(wait)
        return self

    def wait(self, probe: str = "ready", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if self.client.get(f"/health/{probe}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not {probe} after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
            self.client.close()
        self.proc = None
        return code

    def post(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        return self.client.post(path, json=body, **kw)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def faulty_server(tmp: Path, env: dict[str, str] | None = None) -> tuple[Server, Path]:
    """A server with the faults of ``faulty_server.py``, switched by files in the directory
    returned; readiness recomputed on every probe, so that a test sees each transition."""
    faults = tmp / "faults"
    faults.mkdir(parents=True, exist_ok=True)
    env = {
        "LLMKG_TEST_FAULTS": str(faults),
        "LLMKG__HEALTH_CHECKS__READINESS_PROBE_INTERVAL": "0s",
        **(env or {}),
    }
    command = [sys.executable, str(REPO / "tests" / "faulty_server.py")]
    return Server(tmp, env, command=command), faults


def until(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``check`` until it holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout}s"
        time.sleep(0.02)


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("LLMKG_CONFIG_PATH", None)
    full_env.pop("LLMKG_ENVIRONMENT", None)
    return subprocess.run(
        [*SERVER, *args], env=full_env, capture_output=True, text=True, timeout=timeout
    )


def fact(i: int, dim: int = 16, **kw: Any) -> dict[str, Any]:
    """A fact with its own deterministic unit-ish embedding."""
    import numpy as np

    v = np.random.default_rng(i).normal(size=dim)
    out = {
        "subject": f"s{i}",
        "predicate": "p",
        "object": f"o{i}",
        "confidence": 0.5,
        "embedding": (v / np.linalg.norm(v)).tolist(),
    }
    out.update(kw)
    return out
