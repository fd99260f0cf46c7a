"""The kustomize overlays render, validate against the Kubernetes schemas, and say what
config/production.toml (and the environment overlay) needs: ports, probes, paths, TLS,
partitions, non-root and read-only, one claim per pod, a ConfigMap equal to the TOML."""

from __future__ import annotations

import posixpath
from pathlib import PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .helpers import OVERLAYS, REPO, config, one, rendered, seconds

# The oldest release the manifests support (the pod-index label: 1.28+, on by default)
# that kubernetes-validate still ships, and the newest it knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
STS = "llmkg-scalable-allocation"
POD_LABELS = {"app": "llmkg", "component": "scalable-allocation"}
WRITABLE = {"/var/lib/llmkg", "/tmp/llmkg-cache"}


def environment(overlay: str) -> str:
    return overlay  # the overlays are named after config/environments/<name>.toml


def statefulset(overlay: str) -> dict[str, Any]:
    return one(rendered(overlay), "StatefulSet", STS)


def pod_spec(overlay: str) -> dict[str, Any]:
    return statefulset(overlay)["spec"]["template"]["spec"]


def container(overlay: str) -> dict[str, Any]:
    (c,) = pod_spec(overlay)["containers"]
    return c


def env(overlay: str) -> dict[str, Any]:
    return {e["name"]: e for e in container(overlay)["env"]}


def validate(doc: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError:
        pytest.fail(f"no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes {version}")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_document_validates(overlay: str, version: str) -> None:
    docs = rendered(overlay)
    kinds = {d["kind"] for d in docs}
    assert {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds
    assert "Deployment" not in kinds and "PersistentVolumeClaim" not in kinds
    for doc in docs:
        validate(doc, version)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace(overlay: str) -> None:
    docs = rendered(overlay)
    ns = f"llmkg-{overlay}"
    assert one(docs, "Namespace")["metadata"]["name"] == ns
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == ns, doc["metadata"]["name"]
    binding = one(docs, "RoleBinding")
    assert all(s.get("namespace") == ns for s in binding["subjects"])


def test_discovery_settings_match_the_production_overlay() -> None:
    discovery = config()["scalability"]["distribution"]["discovery"]
    docs = rendered("production")
    assert discovery["type"] == "kubernetes"
    assert discovery["namespace"] == one(docs, "Namespace")["metadata"]["name"]
    service = one(docs, "Service", discovery["service_name"])
    assert discovery["port"] in {p["port"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_statefulset_has_one_claim_per_pod(overlay: str) -> None:
    sts = statefulset(overlay)
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["storageClassName"] == "gp3-csi"
    assert claim["spec"]["resources"]["requests"]["storage"] == "100Gi"
    volumes = pod_spec(overlay)["volumes"]
    assert not [v for v in volumes if "persistentVolumeClaim" in v], "a claim shared by pods"
    assert "data" not in {v["name"] for v in volumes}  # "data" is the claim template
    mounts = {m["name"]: m for m in container(overlay)["volumeMounts"]}
    assert mounts["data"]["mountPath"] == config(environment(overlay))["storage"]["data_directory"]
    # Peer discovery: the StatefulSet's governing Service is headless.
    headless = one(rendered(overlay), "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == POD_LABELS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_pod_per_partition(overlay: str) -> None:
    scalability = config(environment(overlay))["scalability"]
    expected = scalability["distribution"]["partition_count"]
    if not scalability["enable_distributed"]:
        expected = 1  # undistributed pods behind one Service would each hold another graph
    assert statefulset(overlay)["spec"]["replicas"] == expected


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_partition_id_is_the_pod_index(overlay: str) -> None:
    source = env(overlay)["LLMKG_PARTITION_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert source == "metadata.labels['apps.kubernetes.io/pod-index']"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment_variables(overlay: str) -> None:
    variables = env(overlay)
    assert variables["RUST_LOG"]["value"] == "info,llmkg=debug"
    assert variables["RUST_BACKTRACE"]["value"] == "1"
    assert variables["LLMKG_CONFIG_PATH"]["value"] == "/etc/llmkg/production.toml"
    if overlay == "production":
        assert "LLMKG_ENVIRONMENT" not in variables
    else:
        assert variables["LLMKG_ENVIRONMENT"]["value"] == overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_non_root_and_read_only(overlay: str) -> None:
    pod = pod_spec(overlay)["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (1000, 1000, 1000)
    c = container(overlay)["securityContext"]
    assert c["readOnlyRootFilesystem"] is True
    assert c["allowPrivilegeEscalation"] is False
    assert c["capabilities"]["drop"] == ["ALL"]
    assert "add" not in c["capabilities"] and not c.get("privileged", False)
    # Only the data and cache volumes are writable; config and secrets are mounted read-only.
    writable = {m["mountPath"] for m in container(overlay)["volumeMounts"] if not m.get("readOnly")}
    assert writable == WRITABLE
    cache = {v["name"]: v for v in pod_spec(overlay)["volumes"]}["cache"]
    assert cache["emptyDir"]["sizeLimit"] == "1Gi"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_follow_the_config(overlay: str) -> None:
    cfg = config(environment(overlay))
    checks = cfg["health_checks"]
    scheme = "HTTPS" if cfg["security"]["enable_tls"] else "HTTP"
    c = container(overlay)
    paths = {
        "startupProbe": "/health/live",
        "livenessProbe": "/health/live",
        "readinessProbe": "/health/ready",
    }
    for probe, path in paths.items():
        get = c[probe]["httpGet"]
        assert (get["path"], get["port"], get["scheme"]) == (
            path,
            cfg["server"]["http_port"],
            scheme,
        ), probe
        assert c[probe]["timeoutSeconds"] <= seconds(checks["health_check_timeout"]), probe
    assert c["readinessProbe"]["periodSeconds"] == seconds(checks["readiness_probe_interval"])
    assert c["livenessProbe"]["periodSeconds"] == seconds(checks["liveness_probe_interval"])
    assert c["startupProbe"]["initialDelaySeconds"] == seconds(checks["startup_probe_delay"])
    # SIGTERM: unready for drain_delay, then up to shutdown_timeout for in-flight requests
    # and the closing checkpoint; the kubelet must not kill the pod before that.
    server = cfg["server"]
    grace = pod_spec(overlay)["terminationGracePeriodSeconds"]
    assert grace >= seconds(server["drain_delay"]) + seconds(server["shutdown_timeout"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_services_and_scrape_annotations(overlay: str) -> None:
    cfg = config(environment(overlay))
    server = cfg["server"]
    ports = {p["name"]: p["containerPort"] for p in container(overlay)["ports"]}
    assert ports == {
        "http": server["http_port"],
        "grpc": server["grpc_port"],
        "metrics": server["metrics_port"],
    }
    service = one(rendered(overlay), "Service", "llmkg-scalable-allocation-service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == POD_LABELS
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("http", 8080, 8080),
        ("grpc", 8081, 8081),
    }
    annotations = statefulset(overlay)["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(server["metrics_port"]),
        "prometheus.io/path": cfg["monitoring"]["prometheus"]["endpoint"],
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmap_is_the_toml_byte_for_byte(overlay: str) -> None:
    docs = rendered(overlay)
    maps = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("llmkg-config")
    ]
    assert len(maps) == 1
    data = maps[0]["data"]
    files = {"production.toml": REPO / "config/production.toml"}
    for path in sorted((REPO / "config/environments").glob("*.toml")):
        files[path.name] = path
    assert set(data) == set(files), "config/kustomization.yaml must list every TOML file"
    for key, path in files.items():
        assert data[key] == path.read_text(), key
    # The volume puts each key back at its path in config/, under /etc/llmkg.
    (volume,) = [v for v in pod_spec(overlay)["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == maps[0]["metadata"]["name"]  # the hashed name
    items = {i["key"]: i["path"] for i in volume["configMap"]["items"]}
    assert items == {k: str(p.relative_to(REPO / "config")) for k, p in files.items()}
    mount = {m["name"]: m for m in container(overlay)["volumeMounts"]}["config"]
    assert mount["mountPath"] == "/etc/llmkg" and mount["readOnly"] is True
    config_path = env(overlay)["LLMKG_CONFIG_PATH"]["value"]
    assert posixpath.relpath(config_path, mount["mountPath"]) in items.values()
    if overlay != "production":
        assert f"environments/{overlay}.toml" in items.values()


def secret_templates() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((REPO / "k8s/secrets.example.yaml").read_text())
    return {d["metadata"]["name"]: d for d in docs if d}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tls_and_jwt_files_come_from_mounted_secrets(overlay: str) -> None:
    security = config(environment(overlay))["security"]
    files = [security["authentication"]["secret_key_file"]]
    if security["enable_tls"]:
        files += [security["cert_file"], security["key_file"], security["ca_file"]]
    volumes = {v["name"]: v for v in pod_spec(overlay)["volumes"]}
    mounts = {m["mountPath"]: m for m in container(overlay)["volumeMounts"]}
    templates = secret_templates()
    for file in files:
        path = PurePosixPath(file)
        mount = mounts[str(path.parent)]
        assert mount["readOnly"] is True, file
        secret = volumes[mount["name"]]["secret"]["secretName"]
        assert path.name in templates[secret]["stringData"], f"{file}: no key in {secret}"


def test_secret_template_holds_no_secret_and_is_never_rendered() -> None:
    for doc in secret_templates().values():
        for version in K8S_VERSIONS:
            validate(doc, version)
        assert "data" not in doc
        for key, value in doc["stringData"].items():
            assert value.startswith("<") and value.endswith(">"), f"{key}: not a placeholder"
    for overlay in OVERLAYS:
        assert not [d for d in rendered(overlay) if d["kind"] == "Secret"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_resources_and_scheduling_are_the_seeds(overlay: str) -> None:
    c = container(overlay)
    assert c["resources"] == {
        "requests": {"memory": "4Gi", "cpu": "2", "ephemeral-storage": "10Gi"},
        "limits": {"memory": "16Gi", "cpu": "8", "ephemeral-storage": "50Gi"},
    }
    assert c["image"] == "llmkg/scalable-allocation:v2a.1.0"
    pod = pod_spec(overlay)
    assert pod["serviceAccountName"] == "llmkg-service-account"
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64", "node-type": "compute-optimized"}
    assert pod["tolerations"] == [
        {
            "key": "node-type",
            "operator": "Equal",
            "value": "compute-optimized",
            "effect": "NoSchedule",
        }
    ]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    labels = statefulset(overlay)["spec"]["template"]["metadata"]["labels"]
    assert labels == {**POD_LABELS, "version": "v2a.1.0"}
    assert statefulset(overlay)["spec"]["selector"]["matchLabels"] == POD_LABELS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_is_read_only_discovery(overlay: str) -> None:
    docs = rendered(overlay)
    role = one(docs, "Role")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    expected = {
        (group, resource, verb)
        for group, resource in (
            ("", "pods"),
            ("", "endpoints"),
            ("discovery.k8s.io", "endpointslices"),
        )
        for verb in ("get", "list", "watch")
    }
    assert granted == expected
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    binding = one(docs, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert [(s["kind"], s["name"]) for s in binding["subjects"]] == [
        ("ServiceAccount", one(docs, "ServiceAccount")["metadata"]["name"])
    ]
    assert (
        one(docs, "ServiceAccount")["metadata"]["name"] == pod_spec(overlay)["serviceAccountName"]
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_opens_metrics_to_prometheus_only(overlay: str) -> None:
    policy = one(rendered(overlay), "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == POD_LABELS
    assert policy["policyTypes"] == ["Ingress"]
    open_to_all: set[int] = set()
    for rule in policy["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        if "from" not in rule:
            open_to_all |= ports
        elif 9090 in ports:
            for peer in rule["from"]:
                selector = peer["podSelector"]["matchLabels"]
                assert selector.get("app.kubernetes.io/name") == "prometheus", peer
    assert open_to_all == {8080, 8081}
    assert any(9090 in {p["port"] for p in r["ports"]} and "from" in r for r in policy["ingress"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budget_and_topology(overlay: str) -> None:
    docs = rendered(overlay)
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"] == POD_LABELS and pdb["maxUnavailable"] == 1
    topology = yaml.safe_load(
        one(docs, "ConfigMap", "llmkg-scalable-topology")["data"]["topology.yaml"]
    )
    partitions = config()["scalability"]["distribution"]["partition_count"]
    assert topology["partitioning"]["primary_partitions"] == partitions
