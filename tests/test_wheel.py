"""`make wheel` builds an abi3 manylinux wheel that installs and imports in a fresh venv.

This is the path a user takes (`pip install llmkg`), so it is tested away from the source
tree: the wheel goes into a new virtual environment and is imported from a directory
outside the repository, so the editable development install cannot stand in for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _clean_env() -> dict[str, str]:
    # The outer .venv must not leak in through these (the Makefile exports VIRTUAL_ENV).
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = tmp_path_factory.mktemp("dist")
    # The Makefile target itself, so that what `make wheel` produces is what is tested;
    # its target dir (target/wheel) persists, so a second run only relinks.
    subprocess.run(["make", "-C", str(ROOT), "wheel", f"DIST={out}"], check=True)
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_is_abi3_and_manylinux(wheel: Path) -> None:
    # name-version-pythontag-abitag-platformtag.whl
    name, _version, python_tag, abi_tag, platform_tag = wheel.stem.split("-")
    assert name == "llmkg"
    assert (python_tag, abi_tag) == ("cp310", "abi3")
    platforms = platform_tag.split(".")
    assert all(p.startswith("manylinux") for p in platforms), platform_tag
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        wheel_meta = next(n for n in names if n.endswith(".dist-info/WHEEL"))
        tags = [
            line.split(":", 1)[1].strip()
            for line in zf.read(wheel_meta).decode().splitlines()
            if line.startswith("Tag:")
        ]
    assert tags and all(t.startswith("cp310-abi3-manylinux") for t in tags), tags
    assert "llmkg/_core.abi3.so" in names
    assert "llmkg/py.typed" in names and "llmkg/_core.pyi" in names


def test_wheel_installs_and_imports_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # numpy comes from the index (or pip's find-links), as for a user.
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        env=_clean_env(),
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    code = (
        "import llmkg, numpy as np\n"
        "print(llmkg.__file__)\n"
        "v = llmkg.embed_text('hello wheel')\n"
        "assert v.shape == (768,) and v.dtype == np.float32, (v.shape, v.dtype)\n"
        "assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5\n"
    )
    result = subprocess.run(
        [str(python), "-c", code],
        cwd=workdir,
        env=_clean_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    imported_from = Path(result.stdout.splitlines()[0]).resolve()
    assert env_dir.resolve() in imported_from.parents, imported_from
    assert ROOT not in imported_from.parents, imported_from
