"""TLS: the API port speaks only HTTPS at or above ``min_tls_version``, client
certificates are checked against ``ca_file`` when required, bad certificate files stop
start-up naming the file, and ``--health-check`` speaks HTTPS. Real server processes,
certificates made by ``securitylib``. (JWT and rate limits: test_server_security_jwt.py.)"""

from __future__ import annotations

import ctypes
import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from securitylib import Pki, make_pki, tls_env
from serverlib import SERVER, Server, cli, free_port

NO_AUTH = {
    "LLMKG__SECURITY__AUTHENTICATION__TYPE": "none",
    "LLMKG__SECURITY__RATE_LIMIT__ENABLED": "false",
}
LIVE = b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _server(tmp: Path, pki: Pki, **env: str) -> Iterator[Server]:
    # The fixture's own client (its readiness probes) presents the CA-signed client cert.
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.load_cert_chain(*pki.client)
    with Server(tmp, env={**tls_env(pki), **NO_AUTH, **env}, scheme="https", verify=ctx) as server:
        yield server


@pytest.fixture(scope="module")
def tls12(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Server]:
    yield from _server(tmp_path_factory.mktemp("tls12"), pki)


@pytest.fixture(scope="module")
def tls13(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Server]:
    yield from _server(
        tmp_path_factory.mktemp("tls13"), pki, LLMKG__SECURITY__MIN_TLS_VERSION="1.3"
    )


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Server]:
    yield from _server(
        tmp_path_factory.mktemp("mtls"), pki, LLMKG__SECURITY__REQUIRE_CLIENT_CERT="true"
    )


def context(
    pki: Pki,
    *,
    lowest: ssl.TLSVersion = ssl.TLSVersion.MINIMUM_SUPPORTED,
    highest: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    cert: tuple[Path, Path] | None = None,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    # Security level 0 lets this client really offer TLS 1.0/1.1 (OpenSSL 3 otherwise
    # refuses them on the client side, and the test would prove nothing about the server).
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version, ctx.maximum_version = lowest, highest
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


def get_live(server: Server, ctx: ssl.SSLContext) -> tuple[str, bytes]:
    """(negotiated TLS version, the first bytes of the answer to GET /health/live)."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            version = tls.version() or ""
            tls.sendall(LIVE)
            return version, tls.recv(64)


# ---- versions ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["TLSv1_2", "TLSv1_3"])
def test_tls_12_and_13_are_served(tls12: Server, pki: Pki, name: str) -> None:
    version = ssl.TLSVersion[name]
    negotiated, answer = get_live(tls12, context(pki, lowest=version, highest=version))
    assert negotiated == name.replace("_", ".")
    assert answer.startswith(b"HTTP/1.1 200")


def test_tls_11_is_refused(tls12: Server, pki: Pki) -> None:
    ctx = context(pki, lowest=ssl.TLSVersion.TLSv1, highest=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(ssl.SSLError) as refused:
        get_live(tls12, ctx)
    # The server refused the version (not this client failing to offer one).
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value)


def test_min_tls_version_13_refuses_12(tls13: Server, pki: Pki) -> None:
    v12, v13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
    assert get_live(tls13, context(pki, lowest=v13, highest=v13))[0] == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        get_live(tls13, context(pki, lowest=v12, highest=v12))


# ---- TLS 1.2 cipher suites -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tls12_rsa(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Server]:
    cert, key = pki.rsa_server
    yield from _server(
        tmp_path_factory.mktemp("tls12rsa"),
        pki,
        LLMKG__SECURITY__CERT_FILE=str(cert),
        LLMKG__SECURITY__KEY_FILE=str(key),
    )


def tls12_offering(pki: Pki, ciphers: str) -> ssl.SSLContext:
    """A TLS 1.2 client that offers only ``ciphers``."""
    v12 = ssl.TLSVersion.TLSv1_2
    ctx = context(pki, lowest=v12, highest=v12)
    ctx.set_ciphers(ciphers)
    return ctx


@pytest.mark.parametrize(
    ("key", "cbc", "aead"),
    [
        ("rsa", "ECDHE-RSA-AES256-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"),
        ("rsa", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-CHACHA20-POLY1305"),
        ("rsa", "AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),  # no forward secrecy
        ("ecdsa", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        ("ecdsa", "ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ],
)
def test_tls12_serves_only_ecdhe_with_aead(
    tls12: Server, tls12_rsa: Server, pki: Pki, key: str, cbc: str, aead: str
) -> None:
    server = tls12_rsa if key == "rsa" else tls12
    # The control: the same client offering an AEAD suite with the server's key is served.
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as raw:
        with tls12_offering(pki, aead).wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.cipher()[0] == aead  # type: ignore[index]
            tls.sendall(LIVE)
            assert tls.recv(64).startswith(b"HTTP/1.1 200")
    # The client did offer the suite (set_ciphers took it): the server ends the handshake
    # (with an alert or, under uvloop, by closing the connection).
    with pytest.raises(ssl.SSLError):
        get_live(server, tls12_offering(pki, cbc))


@pytest.mark.parametrize("ciphers", ["NO-SUCH-CIPHER", "eNULL:!eNULL"])
def test_tls_ciphers_selecting_nothing_stop_start_up(
    tmp_path: Path, pki: Pki, ciphers: str
) -> None:
    env = tls_env(pki, LLMKG__SECURITY__TLS_CIPHERS=ciphers)
    for args in (["--check-config"], []):
        server = Server(tmp_path, env={**NO_AUTH, **env}, args=args)
        server.client.close()
        result = cli(*server.args, env=server.env)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "security.tls_ciphers" in result.stderr and ciphers in result.stderr


def test_plain_http_gets_no_api_answer(tls12: Server) -> None:
    with socket.create_connection(("127.0.0.1", tls12.http_port), timeout=10) as raw:
        raw.sendall(LIVE)
        try:
            answer = raw.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/")
    assert b"live" not in answer and b"{" not in answer


def test_https_client_sees_the_api(tls12: Server) -> None:
    assert tls12.client.get("/health/live").status_code == 200


# ---- client certificates -------------------------------------------------------------------


def test_client_cert_signed_by_the_ca_is_accepted(mtls: Server, pki: Pki) -> None:
    _, answer = get_live(mtls, context(pki, cert=pki.client))
    assert answer.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("who", ["self-signed", "none"])
@pytest.mark.parametrize("name", ["TLSv1_2", "TLSv1_3"])
def test_other_or_no_client_cert_is_refused(mtls: Server, pki: Pki, who: str, name: str) -> None:
    cert = pki.stranger if who == "self-signed" else None
    version = ssl.TLSVersion[name]
    ctx = context(pki, lowest=version, highest=version, cert=cert)
    # TLS 1.2 fails in the handshake; TLS 1.3 clients learn at their first read.
    try:
        _, answer = get_live(mtls, ctx)
    except (ssl.SSLError, ConnectionError):
        return
    assert not answer.startswith(b"HTTP/"), answer


# ---- --health-check ------------------------------------------------------------------------


def _probe_env(server: Server) -> dict[str, str]:
    keys = ("LLMKG__SERVER__HTTP_PORT", "LLMKG__SECURITY__")
    return {k: v for k, v in server.env.items() if k.startswith(keys)}


def test_health_check_over_https(tls12: Server) -> None:
    assert cli("--health-check", env=_probe_env(tls12)).returncode == 0


def test_health_check_presents_the_server_cert_under_mtls(mtls: Server) -> None:
    assert cli("--health-check", env=_probe_env(mtls)).returncode == 0


def test_health_check_fails_when_down(pki: Pki) -> None:
    env = {**tls_env(pki), **NO_AUTH, "LLMKG__SERVER__HTTP_PORT": str(free_port())}
    assert cli("--health-check", env=env).returncode == 1


# ---- files that stop start-up --------------------------------------------------------------


def start(tmp: Path, **env: str) -> str:
    """Serve with ``env``; start-up must fail with exit code 2. Its stderr."""
    server = Server(tmp, env={**NO_AUTH, **env})
    result = cli(*server.args, env=server.env)
    assert result.returncode == 2, result.stdout + result.stderr
    return result.stderr


def test_missing_cert_file(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "nope.crt"
    err = start(tmp_path, **tls_env(pki, LLMKG__SECURITY__CERT_FILE=str(missing)))
    assert "security.cert_file" in err and str(missing) in err


def test_missing_key_file(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "nope.key"
    err = start(tmp_path, **tls_env(pki, LLMKG__SECURITY__KEY_FILE=str(missing)))
    assert "security.key_file" in err and str(missing) in err


def test_unreadable_cert_file_a_directory(tmp_path: Path, pki: Pki) -> None:
    folder = tmp_path / "cert-dir"
    folder.mkdir()
    err = start(tmp_path, **tls_env(pki, LLMKG__SECURITY__CERT_FILE=str(folder)))
    assert "security.cert_file" in err and str(folder) in err


# Linux capability numbers (linux/capability.h) and prctl's PR_CAPBSET_DROP.
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24


def _without_dac_override() -> None:
    """In the child before exec: drop the capabilities that let root read any file from
    the bounding set, so that the server (still uid 0) is held to the file modes like
    any other user. Raises if it cannot: the test must not pass without the check."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_unreadable_key_file_no_permission(tmp_path: Path, pki: Pki) -> None:
    key = tmp_path / "locked.key"
    key.write_bytes(pki.server[1].read_bytes())
    key.chmod(0)
    server = Server(tmp_path, env={**NO_AUTH, **tls_env(pki, LLMKG__SECURITY__KEY_FILE=str(key))})
    server.client.close()
    # As root (CI), the server runs without CAP_DAC_OVERRIDE: a chmod 000 file is then as
    # unreadable to it as to a service account whose secret was mounted with a bad mode.
    result = subprocess.run(
        [*SERVER, *server.args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_without_dac_override if os.geteuid() == 0 else None,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    err = result.stderr
    assert "security.key_file" in err and str(key) in err
    assert "Permission denied" in err


def test_mismatched_cert_and_key(tmp_path: Path, pki: Pki) -> None:
    err = start(tmp_path, **tls_env(pki, LLMKG__SECURITY__KEY_FILE=str(pki.other_key)))
    assert str(pki.server[0]) in err and str(pki.other_key) in err
    assert "pair" in err


def test_encrypted_key_file(tmp_path: Path, pki: Pki) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.server[1].read_bytes(), None)
    locked = tmp_path / "encrypted.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    err = start(tmp_path, **tls_env(pki, LLMKG__SECURITY__KEY_FILE=str(locked)))
    assert "security.key_file" in err and str(locked) in err and "encrypted" in err


def test_garbage_cert_file(tmp_path: Path, pki: Pki) -> None:
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    err = start(tmp_path, **tls_env(pki, LLMKG__SECURITY__CERT_FILE=str(junk)))
    assert str(junk) in err


def test_missing_ca_file_with_client_certs(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "nope-ca.crt"
    env = tls_env(
        pki,
        LLMKG__SECURITY__CA_FILE=str(missing),
        LLMKG__SECURITY__REQUIRE_CLIENT_CERT="true",
    )
    err = start(tmp_path, **env)
    assert "security.ca_file" in err and str(missing) in err
