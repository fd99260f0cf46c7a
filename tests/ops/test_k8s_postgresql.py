"""The PostgreSQL overlay: production with every pod a replica of one database. It renders
and validates; the pods read the DSN from a mounted Secret (never from the manifests), all
serve partition 0, and `llmkg-server --check-config` accepts their config with the DSN
masked. The CloudNativePG example asks for three instances and required synchronous
replication, and its app Secret's DSN is what the pods' Secret is made from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import REPO, one, rendered
from .test_k8s import K8S_VERSIONS, secret_templates, validate

OVERLAY = "production-postgresql"
STS = "llmkg-scalable-allocation"


def pod(overlay: str = OVERLAY) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = one(rendered(overlay), "StatefulSet", STS)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec, container


def spec_config_map(spec: dict[str, Any]) -> str:
    (volume,) = [v for v in spec["volumes"] if v["name"] == "config"]
    name: str = volume["configMap"]["name"]
    return name


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_overlay_renders_and_validates(version: str) -> None:
    docs = rendered(OVERLAY)
    for doc in docs:
        validate(doc, version)
    assert not [d for d in docs if d["kind"] == "Secret"], "a Secret would be overwritten"
    # The rest of production is unchanged: the same documents, by kind and name.
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert names == {(d["kind"], d["metadata"]["name"]) for d in rendered("production")}


def test_pods_read_the_dsn_from_a_mounted_secret_and_share_one_partition() -> None:
    spec, container = pod()
    env = {e["name"]: e for e in container["env"]}
    assert env["LLMKG__STORAGE__BACKEND"]["value"] == "postgresql"
    assert "LLMKG_PARTITION_ID" not in env, "each pod would write a partition of its own"
    assert "LLMKG_PARTITION_ID" in {e["name"] for e in pod("production")[1]["env"]}
    dsn_file = Path(env["LLMKG__STORAGE__POSTGRESQL__DSN_FILE"]["value"])
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts[str(dsn_file.parent)]
    assert mount["readOnly"] is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]["secretName"]
    assert dsn_file.name in secret_templates()[secret]["stringData"]
    # Nowhere else: neither the environment nor the config holds it.
    assert "LLMKG__STORAGE__POSTGRESQL__DSN" not in env
    configmap = one(rendered(OVERLAY), "ConfigMap", spec_config_map(spec))
    assert 'dsn = ""' in configmap["data"]["production.toml"]


def test_the_pods_config_is_accepted_with_the_dsn_masked(tmp_path: Path) -> None:
    pytest.importorskip("llmkg.server.cli", reason="the package is not built (make develop)")
    from .test_k8s_config import pod_config

    _, container = pod()
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    dsn = tmp_path / env["LLMKG__STORAGE__POSTGRESQL__DSN_FILE"].lstrip("/")
    dsn.parent.mkdir(parents=True)
    dsn.write_text("postgresql://llmkg:s3cret-pw@db-rw:5432/llmkg\n")
    cfg = pod_config(OVERLAY, tmp_path, 0, {"LLMKG__STORAGE__POSTGRESQL__DSN_FILE": str(dsn)})
    assert cfg["storage"]["backend"] == "postgresql"
    assert cfg["scalability"]["distribution"]["partition_id"] == 0
    assert "s3cret-pw" not in json.dumps(cfg)


def test_the_cloudnativepg_example_replicates_synchronously() -> None:
    text = (REPO / "k8s/postgresql/cloudnativepg-cluster.yaml").read_text()
    (cluster,) = [d for d in yaml.safe_load_all(text) if d]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1" and cluster["kind"] == "Cluster"
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["postgresql"]["synchronous"] == {
        "method": "any",
        "number": 1,
        "dataDurability": "required",
    }
    assert spec["bootstrap"]["initdb"] == {"database": "llmkg", "owner": "llmkg"}
    # Its app Secret (<name>-app) is where the instructions take the pods' DSN from.
    name = cluster["metadata"]["name"]
    assert f"get secret {name}-app" in text and "create secret generic llmkg-postgresql" in text
