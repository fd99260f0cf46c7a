"""The ``llmkg-server`` command: --check-config, --health-check, overlays and environment
overrides seen by a running server, single-partition mode, and the operator commands."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from serverlib import CONFIG, Server, cli, fact, free_port, until


def test_check_config_prints_the_effective_config() -> None:
    done = cli(
        "--config", str(CONFIG / "production.toml"), "--environment", "staging", "--check-config"
    )
    assert done.returncode == 0, done.stderr
    effective = json.loads(done.stdout)
    assert effective["performance"]["worker_threads"] == 4
    assert effective["scalability"]["cache"]["l2"]["max_memory"] == "8GB"
    assert effective["security"]["authentication"]["secret_key_file"] == "/etc/secrets/jwt-secret"


def test_check_config_names_key_value_and_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nhttp_port = 'eighty'\n")
    done = cli("--config", str(bad), "--check-config")
    assert done.returncode == 2
    assert (
        str(bad) in done.stderr and "server.http_port" in done.stderr and "'eighty'" in done.stderr
    )
    done = cli("--check-config", env={"LLMKG__SCALABILITY__HNSW__EF_SEARCH": "0"})
    assert done.returncode == 2
    assert "LLMKG__SCALABILITY__HNSW__EF_SEARCH" in done.stderr and "ef_search" in done.stderr
    missing = cli("--config", str(tmp_path / "nope.toml"), "--check-config")
    assert missing.returncode == 2 and "nope.toml" in missing.stderr


def test_health_check_exit_codes(tmp_path: Path) -> None:
    server = Server(tmp_path).start()
    env = {"LLMKG__SERVER__HTTP_PORT": str(server.http_port)}
    try:
        assert cli("--health-check", env=env).returncode == 0
    finally:
        server.stop()
    assert cli("--health-check", env=env).returncode == 1
    assert cli("--health-check", env={"LLMKG__SERVER__HTTP_PORT": str(free_port())}).returncode == 1


def test_the_development_overlay_runs_exact_full_precision_uncached(tmp_path: Path) -> None:
    env = {
        "LLMKG__SECURITY__ENABLE_TLS": "false",
        "LLMKG__SECURITY__AUTHENTICATION__TYPE": "none",
        "LLMKG__SERVER__BIND_ADDRESS": "127.0.0.1",
    }
    args = ["--config", str(CONFIG / "production.toml"), "--environment", "development"]
    with Server(tmp_path, env, args) as server:
        for i in range(30):
            assert server.post("/api/v1/allocate", {"fact": fact(i)}).status_code == 200
        # Stats do not wait for the index linker: the index counts a node once linked.
        until(lambda: server.client.get("/api/v1/stats").json()["inserts"]["pending"] == 0)
        stats = server.client.get("/api/v1/stats").json()
        assert stats["strategy"] == "direct"
        assert stats["index"]["precisions"]["full"] == 30
        # The development overlay leaves caching on (it turns hnsw, distribution
        # and quantization off); the engine test covers enable_caching = false.
        assert stats["cache"]["enabled"] is True
        top = server.post("/api/v1/search", {"query": {"embedding": fact(3)["embedding"], "k": 1}})
        assert top.json()["results"][0]["fact"]["subject"] == "s3"
        assert '"level":"debug"' in server.logs().replace(" ", "")


def test_distributed_config_serves_as_one_partition_and_says_so(tmp_path: Path) -> None:
    env = {"LLMKG__SCALABILITY__ENABLE_DISTRIBUTED": "true", "LLMKG_PARTITION_ID": "3"}
    with Server(tmp_path, env) as server:
        ready = server.client.get("/health/ready").json()
        assert ready["partition"] == {
            "id": 3,
            "count": 8,
            "mode": "single-partition",
            "distributed": True,
            "note": ready["partition"]["note"],
        }
        assert "single partition" in ready["partition"]["note"]
        assert server.post("/api/v1/allocate", {"fact": fact(1)}).json()["partition"] == 3
        assert "serving as a single partition (id 3 of 8)" in server.logs()


def test_checkpoint_and_backup_through_the_server_then_offline_and_restore(tmp_path: Path) -> None:
    server = Server(tmp_path).start()
    env = {k: v for k, v in server.env.items() if k.startswith("LLMKG")}
    try:
        ids = [
            server.post("/api/v1/allocate", {"fact": fact(i)}).json()["node_id"] for i in range(5)
        ]
        online = cli("checkpoint", env=env)
        assert online.returncode == 0 and json.loads(online.stdout)["sequence"] >= 5
        backup = cli("backup", env=env)
        assert backup.returncode == 0, backup.stderr
        folder = json.loads(backup.stdout)["path"]
    finally:
        server.stop()
    offline = cli("checkpoint", env=env)
    assert offline.returncode == 0, offline.stderr

    restored = tmp_path / "restored"
    done = cli("restore", folder, env={**env, "LLMKG__STORAGE__DATA_DIRECTORY": str(restored)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nodes"] == 5
    refused = cli("restore", folder, env={**env, "LLMKG__STORAGE__DATA_DIRECTORY": str(restored)})
    assert refused.returncode == 1 and "already holds llmkg files" in refused.stderr

    again = Server(tmp_path / "second", {"LLMKG__STORAGE__DATA_DIRECTORY": str(restored)}).start()
    try:
        assert [again.client.get(f"/api/v1/nodes/{i}").status_code for i in ids] == [200] * 5
    finally:
        again.stop()


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_restore_refuses_a_damaged_backup(tmp_path: Path, damage: str) -> None:
    with Server(tmp_path) as server:
        server.post("/api/v1/allocate", {"fact": fact(1)})
        folder = Path(server.client.post("/api/v1/admin/backup").json()["path"])
    db = folder / "llmkg.sqlite3"
    data = db.read_bytes()
    db.write_bytes(data[:100] if damage == "truncate" else data[:-1] + bytes([data[-1] ^ 1]))
    done = cli("restore", str(folder), env={"LLMKG__STORAGE__DATA_DIRECTORY": str(tmp_path / "r")})
    assert done.returncode == 1 and "checksum" in done.stderr


@pytest.mark.parametrize(("rust_log", "seen"), [("info,llmkg=debug", True), ("off", False)])
def test_rust_log_sets_the_core_log_level(tmp_path: Path, rust_log: str, seen: bool) -> None:
    with Server(tmp_path, {"RUST_LOG": rust_log}) as first:
        first.post("/api/v1/allocate", {"fact": fact(1)})
    # a new index logs its kernels at debug; a restart loads the snapshot that SIGTERM
    # wrote, and the core logs that at debug too
    assert ('"logger":"llmkg_core.hnsw","message":"SIMD kernels: ' in first.logs()) == seen
    with Server(tmp_path, {"RUST_LOG": rust_log}) as second:
        second.post("/api/v1/search", {"query": {"text": "s1"}})
    assert ('"logger":"llmkg_core.hnsw","message":"index decoded' in second.logs()) == seen


def test_a_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for key in ("HTTP_PORT", "METRICS_PORT"):
            env = {
                "LLMKG__SERVER__HTTP_PORT": str(free_port()),
                "LLMKG__SERVER__METRICS_PORT": str(free_port()),
                f"LLMKG__SERVER__{key}": str(port),
                "LLMKG__STORAGE__DATA_DIRECTORY": str(tmp_path / "data"),
            }
            done = cli(env=env)
            assert done.returncode == 2
            assert f"server.{key.lower()} 127.0.0.1:{port}: cannot listen" in done.stderr
            assert "Traceback" not in done.stderr + done.stdout
