"""scripts/deploy-production.sh: shellcheck-clean; --dry-run renders and validates each
overlay without a cluster and refuses a broken one; a real deploy (against a stand-in
kubectl that records its calls) waits for the rollout, health-checks every pod, and rolls
back when either fails."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from .helpers import OVERLAYS, PRODUCTION_OVERLAYS, REPO, run, tool

SCRIPT = REPO / "scripts/deploy-production.sh"


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ENVIRONMENT", "IMAGE_TAG")}
    # The venv's tools first, as under `make`.
    env["PATH"] = f"{Path(tool('kubectl')).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def test_shellcheck_clean() -> None:
    scripts = sorted(str(p) for p in (REPO / "scripts").glob("*.sh"))
    assert scripts
    scripts.append(str(REPO / ".ci/run"))
    out = run(tool("shellcheck"), *scripts)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dry_run_renders_and_validates(overlay: str) -> None:
    out = run(str(SCRIPT), "--dry-run", env=script_env(ENVIRONMENT=overlay))
    assert out.returncode == 0, out.stderr
    assert f"valid against Kubernetes 1.30.0: namespace llmkg-{overlay}" in out.stderr
    assert "StatefulSet/llmkg-scalable-allocation" in out.stderr
    assert "dry run: nothing applied" in out.stderr
    assert out.stdout == ""  # no manifest, so no config or secret, reaches the terminal


@pytest.mark.parametrize("overlay", PRODUCTION_OVERLAYS)
def test_dry_run_of_the_production_variants(overlay: str) -> None:
    out = run(str(SCRIPT), "--dry-run", env=script_env(ENVIRONMENT=overlay))
    assert out.returncode == 0, out.stderr
    assert "valid against Kubernetes 1.30.0: namespace llmkg-production" in out.stderr
    assert "dry run: nothing applied" in out.stderr and out.stdout == ""


def test_dry_run_refuses_bad_arguments() -> None:
    for env in ({"ENVIRONMENT": "dev"}, {"IMAGE_TAG": "v1\nkind: Secret"}):
        out = run(str(SCRIPT), "--dry-run", env=script_env(**env))
        assert out.returncode != 0 and "error:" in out.stderr, env
    assert run(str(SCRIPT), "--bogus", env=script_env()).returncode != 0


def copy_tree(tmp_path: Path) -> Path:
    for part in ("scripts", "k8s", "config"):
        shutil.copytree(REPO / part, tmp_path / part)
    return tmp_path


def test_dry_run_fails_on_a_broken_overlay(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    sts = root / "k8s/base/statefulset.yaml"
    sts.write_text(sts.read_text().replace("containerPort: 8081", "containerPort: grpc-port"))
    out = run(str(root / "scripts/deploy-production.sh"), "--dry-run", env=script_env())
    assert out.returncode != 0
    assert "do not validate" in out.stderr


def test_dry_run_fails_when_kustomize_cannot_render(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    (root / "config/environments/staging.toml").unlink()  # listed by config/kustomization.yaml
    out = run(str(root / "scripts/deploy-production.sh"), "--dry-run", env=script_env())
    assert out.returncode != 0


# A stand-in kubectl: `kustomize` goes to the real one; everything else is logged to
# $FAKE_LOG and answered as a cluster would, with the rollout status and the health check
# failing when FAKE_ROLLOUT_RC / FAKE_HEALTH_RC say so.
FAKE_KUBECTL = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >>"$FAKE_LOG"
STS=llmkg-scalable-allocation
case "$*" in
    kustomize*) exec "$REAL_KUBECTL" "$@" ;;
    version*) exit 0 ;;
    "create namespace"*) printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$3" ;;
    apply*) cat >/dev/null ;;
    *"get secret"*) [[ -z ${FAKE_MISSING_SECRET:-} || $* != *"$FAKE_MISSING_SECRET"* ]] || exit 1
                   printf 'secret/%s\n' "${*: -3:1}" ;;
    *"get statefulset"*currentRevision*) printf 'rev-good' ;;
    *"get statefulset"*generation*) printf '3 3' ;;
    *"get statefulset"*updateRevision*) printf 'rev-good' ;;
    *"rollout status"*)
        if [[ -f $FAKE_LOG.undone ]]; then exit 0; fi
        if [[ -n ${FAKE_ROLLOUT_FAIL:-} && $* == *"$FAKE_ROLLOUT_FAIL"* ]]; then exit 1; fi
        exit "${FAKE_ROLLOUT_RC:-0}" ;;
    *"rollout undo"*) touch "$FAKE_LOG.undone" ;;
    *"get pods"*"-o name"*) printf 'pod/%s\n' "$STS-0" "$STS-1" ;;
    *"get pods"*jsonpath*) printf '%s rev-bad\n%s rev-good\n' "$STS-0" "$STS-1" ;;
    *"delete pod"*) ;;
    *exec*) exit "${FAKE_HEALTH_RC:-0}" ;;
    *) echo "fake kubectl: unexpected: $*" >&2; exit 3 ;;
esac
"""


def deploy(tmp_path: Path, **env: str) -> tuple[int, str, list[str]]:
    fake = tmp_path / "kubectl"
    fake.write_text(FAKE_KUBECTL)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    out = run(
        str(SCRIPT),
        env=script_env(
            KUBECTL=str(fake),
            REAL_KUBECTL=tool("kubectl"),
            FAKE_LOG=str(log),
            HEALTH_DELAY="0",
            **env,
        ),
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return out.returncode, out.stdout + out.stderr, calls


def test_deploy_applies_waits_and_checks_every_pod(tmp_path: Path) -> None:
    rc, output, calls = deploy(tmp_path, IMAGE_TAG="v2a.1.1")
    assert rc == 0, output
    applied = next(i for i, c in enumerate(calls) if c.startswith("apply -f") and "-" != c[-1])
    waited = next(i for i, c in enumerate(calls) if "rollout status statefulset/" in c)
    checks = [c for c in calls if " exec " in f" {c} " and "llmkg-server --health-check" in c]
    assert applied < waited
    assert len(checks) == 2  # one per pod
    assert not [c for c in calls if "rollout undo" in c]
    assert "2 pods healthy in llmkg-production" in output


def test_deploy_rolls_back_a_failed_rollout(tmp_path: Path) -> None:
    rc, output, calls = deploy(tmp_path, FAKE_ROLLOUT_RC="1")
    assert rc != 0
    assert "-n llmkg-production rollout undo statefulset/llmkg-scalable-allocation" in calls
    # Forced rollback: the pod of the bad revision is deleted, the good one kept.
    deleted = [c for c in calls if "delete pod" in c]
    assert deleted == ["-n llmkg-production delete pod llmkg-scalable-allocation-0 --wait=false"]
    assert not [c for c in calls if " exec " in f" {c} "]
    assert "rolled back to rev-good" in output


def test_deploy_rolls_back_a_failed_health_check(tmp_path: Path) -> None:
    rc, _, calls = deploy(tmp_path, ENVIRONMENT="staging", FAKE_HEALTH_RC="1")
    assert rc != 0
    assert len([c for c in calls if "llmkg-server --health-check" in c]) == 5  # retries
    assert "-n llmkg-staging rollout undo statefulset/llmkg-scalable-allocation" in calls


def test_deploy_refuses_without_the_secrets(tmp_path: Path) -> None:
    rc, output, calls = deploy(tmp_path, FAKE_MISSING_SECRET="llmkg-jwt")
    assert rc != 0 and "Secret llmkg-jwt is missing" in output
    assert not [c for c in calls if c.startswith("apply -f") and not c.endswith("-")]


def test_deploy_on_postgresql_needs_the_database_secret(tmp_path: Path) -> None:
    # The Secrets checked are those the overlay mounts: this one adds the DSN's.
    rc, output, calls = deploy(
        tmp_path, ENVIRONMENT="production-postgresql", FAKE_MISSING_SECRET="llmkg-postgresql"
    )
    assert rc != 0 and "Secret llmkg-postgresql is missing" in output
    assert not [c for c in calls if c.startswith("apply -f") and not c.endswith("-")]


PARTITIONED_SETS = [f"llmkg-scalable-allocation-{zone}" for zone in ("us-west-2a", "us-west-2b")]


def test_zone_statefulsets_roll_out_one_after_the_other(tmp_path: Path) -> None:
    rc, output, calls = deploy(tmp_path, ENVIRONMENT="production-partitioned")
    assert rc == 0, output
    waits = [i for i, c in enumerate(calls) if "rollout status statefulset/" in c]
    assert [calls[i].split()[4] for i in waits] == [f"statefulset/{s}" for s in PARTITIONED_SETS]
    applies = [i for i, c in enumerate(calls) if c.startswith("apply -f") and c[-1] != "-"]
    # Everything else, then each zone's StatefulSet once the one before has rolled out.
    assert len(applies) == 3 and applies[0] < applies[1] < waits[0] < applies[2] < waits[1]


def test_a_failed_zone_rolls_back_every_zone_applied_the_last_first(tmp_path: Path) -> None:
    rc, output, calls = deploy(
        tmp_path, ENVIRONMENT="production-partitioned", FAKE_ROLLOUT_FAIL="us-west-2b"
    )
    assert rc != 0
    undone = [c.split()[-1] for c in calls if "rollout undo" in c]
    assert undone == [f"statefulset/{s}" for s in reversed(PARTITIONED_SETS)]
    assert not [c for c in calls if " exec " in f" {c} "]
    assert "failed and was rolled back" in output
