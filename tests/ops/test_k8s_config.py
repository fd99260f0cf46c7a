"""The pods' view of the config, read by the server's own loader: the rendered ConfigMap is
written out as its volume lays it under /etc/llmkg, the container's environment is set as
the StatefulSet sets it (the partition id of the pod with the highest ordinal), and
`llmkg-server --check-config` must accept it and resolve the paths the manifests mount."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .helpers import OVERLAYS, one, rendered, run

pytest.importorskip("llmkg.server.cli", reason="the package is not built (make develop)")

POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"


def pod_run(
    overlay: str,
    root: Path,
    ordinal: int,
    args: tuple[str, ...],
    extra: dict[str, str] | None = None,
    statefulset: str = "llmkg-scalable-allocation",
) -> subprocess.CompletedProcess[str]:
    """``llmkg-server ARGS`` as pod ``ordinal`` of ``statefulset`` would run it: its
    ConfigMap written under ``root`` as the volume lays it, its environment set."""
    docs = rendered(overlay)
    sts = one(docs, "StatefulSet", statefulset)
    spec = sts["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "config"]
    configmap = one(docs, "ConfigMap", volume["configMap"]["name"])
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    etc = root / mount["mountPath"].lstrip("/")
    for item in volume["configMap"]["items"]:
        (etc / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        (etc / item["path"]).write_text(configmap["data"][item["key"]])
    env = {"PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:  # the package from a source tree, not the venv's
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif var["valueFrom"]["fieldRef"]["fieldPath"] == POD_INDEX:
            env[var["name"]] = str(ordinal)  # what the pod-index label holds
    env["LLMKG_CONFIG_PATH"] = str(root / env["LLMKG_CONFIG_PATH"].lstrip("/"))
    env.update(extra or {})
    return run(sys.executable, "-m", "llmkg.server.cli", *args, env=env)


def pod_config(
    overlay: str, root: Path, ordinal: int, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    out = pod_run(overlay, root, ordinal, ("--check-config",), extra)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_gets_a_valid_config(overlay: str, tmp_path: Path) -> None:
    sts = one(rendered(overlay), "StatefulSet", "llmkg-scalable-allocation")
    last = sts["spec"]["replicas"] - 1
    cfg = pod_config(overlay, tmp_path, last)
    assert cfg["scalability"]["distribution"]["partition_id"] == last
    if overlay == "staging":  # the overlay was applied: staging's values
        assert cfg["scalability"]["enable_distributed"] is False
        assert cfg["performance"]["worker_threads"] == 4
    spec = sts["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert cfg["storage"]["data_directory"] in mounts
    security = cfg["security"]
    for path in (security["cert_file"], security["key_file"], security["ca_file"],
                 security["authentication"]["secret_key_file"]):  # fmt: skip
        assert str(Path(path).parent) in mounts, path


def test_a_pod_beyond_the_partitions_is_refused(tmp_path: Path) -> None:
    # One more pod than partitions would not start: the loader and the replica count agree.
    sts = one(rendered("production"), "StatefulSet", "llmkg-scalable-allocation")
    with pytest.raises(AssertionError, match="partition_id"):
        pod_config("production", tmp_path, sts["spec"]["replicas"])
