"""A full disk under a real server: an allocation answers 507 ``storage_full`` (not 500),
nothing acknowledged before is lost, reads go on, the failing checkpoint shows in
readiness and in the metrics, and writes work again once space returns. An I/O error of
the store answers 503 ``store_unavailable`` with ``Retry-After``. The data directory is
on ``lazyfs`` (see ``lazyfs.py``), whose ``full`` switch makes writes that need space
fail with ENOSPC."""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from powerlib import LazyMount, require_fuse
from serverlib import Server, fact

from llmkg.store import SqliteStore, StoreError
from llmkg.store.failures import storage_failure


def test_storage_failures_are_told_apart(tmp_path: Path) -> None:
    with SqliteStore(tmp_path) as store:
        store.insert("s", "p", "o", 0.5, np.ones(8))
        # SQLite's own "disk full": the database may not grow past its page count.
        pages = store._writer.execute("PRAGMA page_count").fetchone()[0]
        store._writer.execute(f"PRAGMA max_page_count={pages}")
        with pytest.raises(StoreError) as full:
            for i in range(1000):
                store.insert("s", "p", f"o{i}", 0.5, np.ones(1024))
    assert isinstance(full.value.__cause__, sqlite3.OperationalError)
    assert storage_failure(full.value) == "full"
    assert storage_failure(full.value.__cause__) == "full"
    assert storage_failure(StoreError("the writer stopped")) == "unavailable"
    assert storage_failure(OSError(28, "No space left on device")) == "full"
    assert storage_failure(OSError(5, "Input/output error")) == "unavailable"
    assert storage_failure(OSError(30, "Read-only file system")) == "unavailable"
    assert storage_failure(sqlite3.OperationalError("disk I/O error")) == "unavailable"
    assert storage_failure(ValueError("not storage")) is None
    assert storage_failure(FileNotFoundError(2, "not storage either")) is None


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[LazyMount]:
    require_fuse()
    with LazyMount(tmp_path) as mount:
        yield mount


def ok(response: httpx.Response) -> httpx.Response | None:
    return response if response.status_code == 200 else None


def poll(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def metric(server: Server, name: str) -> float | None:
    text = httpx.get(server.metrics_url + "/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def allocate(server: Server, i: int) -> httpx.Response:
    return server.post("/api/v1/allocate", {"fact": fact(i)})


def test_full_disk_answers_507_keeps_serving_and_recovers(disk: LazyMount, tmp_path: Path) -> None:
    env = {
        "LLMKG__STORAGE__DATA_DIRECTORY": str(disk.mountpoint / "data"),
        "LLMKG__STORAGE__PERSISTENCE__CHECKPOINT_INTERVAL": "1s",
        "LLMKG__HEALTH_CHECKS__READINESS_PROBE_INTERVAL": "0s",
    }
    server = Server(tmp_path / "server", env=env).start()
    try:
        ids = {allocate(server, i).json()["node_id"]: i for i in range(20)}
        # The disk fills while writes are waiting for a snapshot (if the background
        # checkpoint took them all first, one more write makes new ones).
        for i in range(20, 30):
            disk.command("full")
            stats = server.client.get("/api/v1/stats").json()
            if stats["store"]["last_seq"] > stats["snapshot_seq"]:
                break
            disk.command("space")
            ids[allocate(server, i).json()["node_id"]] = i
        else:
            pytest.fail("every write was in a snapshot before the disk filled")

        refused = allocate(server, 100)
        assert refused.status_code == 507, refused.text
        assert refused.json()["error"]["code"] == "storage_full"
        # Nothing acknowledged is lost, and reads go on.
        for node_id, i in ids.items():
            node = server.client.get(f"/api/v1/nodes/{node_id}")
            assert node.status_code == 200 and node.json()["fact"]["subject"] == f"s{i}"
        hits = server.post("/api/v1/search", {"query": {"embedding": fact(3)["embedding"]}})
        assert hits.json()["results"][0]["fact"]["subject"] == "s3"

        # The background checkpoint fails: shown, but the server stays ready.
        def checkpoint_check() -> Any:
            ready = server.client.get("/health/ready")
            detail = ready.json()["checks"]["checkpoint"]["detail"]
            return (ready, detail) if detail.startswith("failing") else None

        ready, detail = poll("a failing checkpoint in readiness", checkpoint_check)
        assert ready.status_code == 200, ready.text
        assert any(w in detail for w in ("disk is full", "No space left", "no room")), detail
        assert (metric(server, "llmkg_checkpoint_failures_total") or 0) >= 1
        assert metric(server, "llmkg_checkpoint_last_success_timestamp_seconds") is not None
        forced = server.post("/api/v1/admin/checkpoint", None)
        assert forced.status_code == 507, forced.text

        # Space returns: writes (once the store's writer has retried) and checkpoints work
        # again.
        disk.command("space")
        after = poll("writes after space returns", lambda: ok(allocate(server, 101)))
        assert server.client.get(f"/api/v1/nodes/{after.json()['node_id']}").status_code == 200
        assert server.post("/api/v1/admin/checkpoint", None).status_code == 200
        assert server.client.get("/health/ready").json()["checks"]["checkpoint"]["detail"] == "ok"

        # Any other failure of the disk: 503, worth a retry later.
        disk.cut()
        broken = allocate(server, 102)
        assert broken.status_code == 503, broken.text
        assert broken.json()["error"]["code"] == "store_unavailable"
        assert int(broken.headers["retry-after"]) > 0
    finally:
        # SIGKILL: after the cut no final checkpoint can be written anyway.
        server.stop(signal.SIGKILL)
