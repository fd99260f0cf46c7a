"""loadtest/k6-scalability-test.js: k6 parses it, the profiles and per-endpoint thresholds
are the intended ones, and against a stub server on 127.0.0.1 the `errors` rate is the
share of failed checks (not 100% after a single failure), with the request
shape and headers taken from the environment."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from .helpers import REPO, run, tool

SCRIPT = REPO / "loadtest/k6-scalability-test.js"


def inspect(*env: str) -> dict[str, Any]:
    args = [a for e in env for a in ("-e", e)]
    out = run(tool("k6"), "inspect", "--execution-requirements", *args, str(SCRIPT))
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_full_profile_is_the_seeds() -> None:
    options = inspect()
    assert [(s["duration"], s["target"]) for s in options["stages"]] == [
        ("2m0s", 100), ("5m0s", 100), ("2m0s", 200), ("5m0s", 200),
        ("2m0s", 500), ("10m0s", 500), ("2m0s", 0),
    ]  # fmt: skip
    assert options["thresholds"] == {
        "http_req_duration{name:allocate}": ["p(95)<100"],
        "http_req_duration{name:search}": ["p(95)<50"],
        "errors": ["rate<0.01"],
    }


def test_short_profile() -> None:
    options = inspect("PROFILE=short")
    assert [(s["duration"], s["target"]) for s in options["stages"]] == [
        ("20s", 200), ("1m0s", 200), ("10s", 0),
    ]  # fmt: skip


def test_bad_embedding_dim_is_refused() -> None:
    out = run(tool("k6"), "inspect", "-e", "EMBEDDING_DIM=abc", str(SCRIPT))
    assert out.returncode != 0 and "EMBEDDING_DIM" in out.stdout + out.stderr


class Stub(BaseHTTPRequestHandler):
    """allocate answers 200, search 500; every request is recorded."""

    seen: ClassVar[list[tuple[str, dict[str, str], dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Stub.seen.append((self.path, dict(self.headers), body))
        status = 200 if self.path == "/api/v1/allocate" else 500
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    Stub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_error_rate_counts_every_check(stub: str, tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    out = run(
        tool("k6"), "run", "--quiet", "--vus", "1", "--iterations", "2",
        "-e", f"TARGET_URL={stub}/", "-e", "EMBEDDING_DIM=16", "-e", "AUTH_TOKEN=t0ken",
        "--summary-export", str(summary), str(SCRIPT),
    )  # fmt: skip
    assert out.returncode != 0  # the search failures break the `errors` threshold
    metrics = json.loads(summary.read_text())["metrics"]
    checks, errors = metrics["checks"], metrics["errors"]
    total = checks["passes"] + checks["fails"]
    assert total == 8  # 2 iterations x 4 checks, each recorded once
    assert checks["fails"] >= 2  # at least the two `search status is 200`
    # In k6's summary a Rate's "passes" are the true samples: here, the failed checks.
    assert errors["passes"] == checks["fails"] and errors["passes"] + errors["fails"] == total
    assert errors["value"] == pytest.approx(checks["fails"] / total)
    assert errors["value"] < 1

    paths = [path for path, _, _ in Stub.seen]
    assert paths == ["/api/v1/allocate", "/api/v1/search"] * 2
    for path, headers, body in Stub.seen:
        assert headers["Authorization"] == "Bearer t0ken"
        assert headers["Content-Type"] == "application/json"
        if path.endswith("search"):
            assert len(body["query"]["embedding"]) == 16 and body["query"]["k"] == 50
        else:
            assert set(body["fact"]) == {"subject", "predicate", "object", "confidence"}
    # The endpoints' tags carry their own thresholds.
    assert "http_req_duration{name:allocate}" in metrics
    assert "http_req_duration{name:search}" in metrics
