"""docker/Dockerfile.production: hadolint finds no error, and the image is what the issue and
config/production.toml ask for. No Docker engine runs here, so the build itself is not
exercised: these checks read the file."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex

from .helpers import REPO, config, run, seconds, tomllib, tool

DOCKERFILE = REPO / "docker/Dockerfile.production"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for inst in instructions():
        if inst[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(inst)
    return result


def test_hadolint_finds_no_error() -> None:
    out = run(tool("hadolint"), "--format", "json", "--no-fail", str(DOCKERFILE))
    assert out.returncode == 0, out.stderr
    findings = json.loads(out.stdout)
    errors = [f for f in findings if f["level"] == "error"]
    assert not errors, errors


def test_hadolint_would_catch_an_error(tmp_path) -> None:
    # The check above can fail: hadolint reports a broken copy of the file as an error.
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("WORKDIR /src", "WORKDIR src"))
    broken.write_text(broken.read_text() + "\nCOPY --from=builder /wheels /wheels\nRUN cd /x\n")
    out = run(tool("hadolint"), "--format", "json", "--no-fail", str(broken))
    assert any(f["level"] == "error" for f in json.loads(out.stdout)), out.stdout


def test_two_alpine_stages_builder_then_runtime() -> None:
    builder, runtime = stages()
    assert re.fullmatch(r"FROM rust:\S*alpine\S* AS builder", " ".join(builder[0]))
    assert re.fullmatch(r"FROM python:\S*alpine\S* AS runtime", " ".join(runtime[0]))
    runs = [args for word, args in builder if word == "RUN"]
    maturin = [r for r in runs if "maturin build" in r]
    assert len(maturin) == 1 and "--release" in maturin[0] and "musllinux_1_2" in maturin[0]
    # The runtime installs the wheel and nothing else by pip.
    pip = [args for word, args in runtime if word == "RUN" and "pip install" in args]
    assert len(pip) == 1
    (installed,) = re.findall(r"pip install (?:--\S+ )*(.+)$", pip[0])
    assert installed.split() == ["/wheels/llmkg-*.whl"]
    assert "from=builder" in pip[0]


def test_dependencies_are_built_before_the_sources_are_copied() -> None:
    builder = stages()[0]
    copies = [i for i, (w, a) in enumerate(builder) if w == "COPY"]
    dep_build = next(i for i, (w, a) in enumerate(builder) if w == "RUN" and "cargo fetch" in a)
    source_copy = next(i for i, (w, a) in enumerate(builder) if w == "COPY" and "rust/ " in a + " ")
    manifest_copies = [builder[i][1] for i in copies if i < dep_build]
    assert manifest_copies, "no manifests copied before the dependency build"
    for args in manifest_copies:
        sources = shlex.split(args)[:-1]
        assert all(s.endswith(("Cargo.toml", "Cargo.lock")) for s in sources), args
    assert "cargo build" in builder[dep_build][1] and dep_build < source_copy
    members = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["members"]
    assert members
    for member in members:
        assert any(f"{member}/Cargo.toml" in a for a in manifest_copies), member


def test_runtime_user_paths_and_command() -> None:
    runtime = stages()[1]
    text = " ".join(f"{w} {a}" for w, a in runtime)
    assert "addgroup -g 1000 llmkg" in text and "adduser -u 1000 -G llmkg" in text
    (user,) = [a for w, a in runtime if w == "USER"]
    assert user == "1000:1000"
    # Writable: only the data and cache directories are given to the user.
    chowns = re.findall(r"chown (?:-R )?llmkg:llmkg ([^&]+)", text)
    assert [set(c.split()) for c in chowns] == [{"/var/lib/llmkg", "/tmp/llmkg-cache"}]
    (volume,) = [a for w, a in runtime if w == "VOLUME"]
    assert set(json.loads(volume)) == {"/var/lib/llmkg", "/tmp/llmkg-cache"}
    # The repository's config/ (not a docs/ folder), read-only for the service.
    config_copies = [a for w, a in runtime if w == "COPY" and "config/" in a]
    assert {shlex.split(a)[-1] for a in config_copies} == {
        "/etc/llmkg/production.toml",
        "/etc/llmkg/environments/",
    }
    assert all("--chown=root:root" in a for a in config_copies)
    (cmd,) = [a for w, a in runtime if w == "CMD"]
    assert json.loads(cmd) == ["llmkg-server", "--config", "/etc/llmkg/production.toml"]
    (expose,) = [a for w, a in runtime if w == "EXPOSE"]
    server = config()["server"]
    assert expose.split() == [str(server[k]) for k in ("http_port", "grpc_port", "metrics_port")]


def test_healthcheck_follows_the_config() -> None:
    (health,) = [a for w, a in stages()[1] if w == "HEALTHCHECK"]
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", health))
    checks = config()["health_checks"]
    assert seconds(options["interval"]) == seconds(checks["liveness_probe_interval"])
    assert seconds(options["timeout"]) == seconds(checks["health_check_timeout"])
    assert seconds(options["start-period"]) == seconds(checks["startup_probe_delay"])
    assert options["retries"] == "3"
    assert health.endswith("CMD llmkg-server --health-check || exit 1")


def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics, enough for this file: last match wins, `!` re-includes,
    a pattern matching a parent directory matches everything below it."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        pattern = pattern.removeprefix("**/")
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c.split("/")[-1], pattern)
               for c in candidates):  # fmt: skip
            result = not negate
    return result


def test_every_copied_path_exists_and_reaches_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied: list[str] = []
    for word, args in instructions():
        if word == "COPY" and "--from" not in args:
            copied += [s for s in shlex.split(args)[:-1] if not s.startswith("--")]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for heavy in ("target", ".venv", ".git", "tests", "config/kustomization.yaml"):
        assert ignored(heavy, patterns), f"{heavy} is sent to the build context"
