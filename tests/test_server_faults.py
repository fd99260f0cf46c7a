"""A real server whose store or index linker fails (faults switched by files, see
``faulty_server.py``): writes answer 503 with ``Retry-After`` (not 500, not a hang),
readiness turns 503 naming the failing part, reads go on, and all of it recovers once the
fault is gone."""

from __future__ import annotations

from pathlib import Path

import httpx
from serverlib import Server, fact, faulty_server, until


def readiness(server: Server) -> httpx.Response:
    return server.client.get("/health/ready")


def test_a_store_that_cannot_commit_answers_503_and_is_not_ready(tmp_path: Path) -> None:
    server, faults = faulty_server(tmp_path)
    with server:
        before = server.post("/api/v1/allocate", {"fact": fact(1)}).json()["node_id"]
        (faults / "commit").touch()
        refused = server.post("/api/v1/allocate", {"fact": fact(2)})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "store_unavailable"
        assert refused.headers["retry-after"] == "1"
        ready = readiness(server)
        assert ready.status_code == 503 and not ready.json()["checks"]["store"]["ok"]
        assert ready.json()["status"] == "not_ready"
        # Refused at once while failed, and reads go on.
        assert server.post("/api/v1/allocate", {"fact": fact(3)}).status_code == 503
        top = server.post("/api/v1/search", {"query": {"embedding": fact(1)["embedding"]}})
        assert top.status_code == 200 and top.json()["results"][0]["node_id"] == before

        (faults / "commit").unlink()
        until(lambda: readiness(server).status_code == 200)
        after = server.post("/api/v1/allocate", {"fact": fact(2)})
        assert after.status_code == 200 and after.json()["created"]
    assert server.proc is None


def test_a_failing_linker_is_not_ready_and_its_nodes_are_found(tmp_path: Path) -> None:
    server, faults = faulty_server(tmp_path, {"LLMKG__SCALABILITY__HNSW__LINK_ATTEMPTS": "1"})
    with server:
        (faults / "link").touch()
        node = server.post("/api/v1/allocate", {"fact": fact(1)}).json()["node_id"]
        until(lambda: readiness(server).status_code == 503)
        linker = readiness(server).json()["checks"]["linker"]
        assert not linker["ok"] and "link refused" in linker["detail"]
        stats = server.client.get("/api/v1/stats").json()["inserts"]
        assert stats["failing"] and stats["pending"] == 1
        scrape = httpx.get(f"{server.metrics_url}/metrics", timeout=30).text
        assert "llmkg_linker_failing 1.0" in scrape
        top = server.post("/api/v1/search", {"query": {"embedding": fact(1)["embedding"]}})
        assert top.json()["results"][0]["node_id"] == node
        checkpoint = server.client.post("/api/v1/admin/checkpoint")
        assert checkpoint.status_code == 503
        assert checkpoint.json()["error"]["code"] == "index_unavailable"

        (faults / "link").unlink()
        until(lambda: readiness(server).status_code == 200)
        assert server.client.post("/api/v1/admin/checkpoint").status_code == 200
