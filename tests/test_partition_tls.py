"""The partition service over TLS and mutual TLS, with the certificates of
tests/securitylib.py and the same [security] keys as the API's HTTPS."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from partitionlib import ScriptedHandlers, address, run, serving
from securitylib import Pki, make_pki

from llmkg.config.schema import SecuritySettings
from llmkg.partition import PartitionCallError, PeerPool, PeerSpec
from llmkg.partition.tls import channel_credentials
from llmkg.server.startup import StartupError


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_security(pki: Pki, require_client_cert: bool = False) -> SecuritySettings:
    cert, key = pki.server
    return SecuritySettings(
        enable_tls=True,
        cert_file=str(cert),
        key_file=str(key),
        ca_file=str(pki.ca),
        require_client_cert=require_client_cert,
    )


def client_security(
    pki: Pki, identity: tuple[Path, Path], ca: Path | None = None
) -> SecuritySettings:
    return SecuritySettings(
        enable_tls=True,
        cert_file=str(identity[0]),
        key_file=str(identity[1]),
        ca_file=str(ca or pki.ca),
    )


async def get(port_address: str, credentials: grpc.ChannelCredentials | None) -> str:
    pool = PeerPool(
        max_retries=0, credentials=credentials, peers=[PeerSpec(port_address, "", frozenset({0}))]
    )
    try:
        node = await pool.get(0, 1, timeout=10)
        assert node is not None
        return node.object
    finally:
        await pool.close()


def refused(port_address: str, credentials: grpc.ChannelCredentials | None) -> PartitionCallError:
    with pytest.raises(PartitionCallError) as caught:
        run(lambda: get(port_address, credentials))
    return caught.value


def test_tls_serves_callers_that_trust_the_ca(pki: Pki) -> None:
    with serving(ScriptedHandlers("pod-1", [0]), security=server_security(pki)) as server:
        at = address(server)
        # Without require_client_cert, a caller's certificate is not asked for.
        assert (
            run(lambda: get(at, channel_credentials(client_security(pki, pki.stranger)))) == "pod-1"
        )
        assert refused(at, None).code is grpc.StatusCode.UNAVAILABLE, "plaintext refused"
        # A caller that trusts another CA refuses the server's certificate.
        other = client_security(pki, pki.client, ca=pki.stranger[0])
        assert refused(at, channel_credentials(other)).code is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_serves_only_callers_with_a_certificate_from_the_ca(pki: Pki) -> None:
    security = server_security(pki, require_client_cert=True)
    with serving(ScriptedHandlers("pod-1", [0]), security=security) as server:
        at = address(server)
        assert (
            run(lambda: get(at, channel_credentials(client_security(pki, pki.client)))) == "pod-1"
        )
        # A pod calling its peers presents its own (server) certificate: it has client use.
        assert run(lambda: get(at, channel_credentials(security))) == "pod-1"
        stranger = channel_credentials(client_security(pki, pki.stranger))
        assert refused(at, stranger).code is grpc.StatusCode.UNAVAILABLE
        anonymous = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
        assert refused(at, anonymous).code is grpc.StatusCode.UNAVAILABLE


def test_unusable_tls_files_stop_start_up_naming_the_key(pki: Pki, tmp_path: Path) -> None:
    missing = server_security(pki)
    missing = SecuritySettings(
        enable_tls=True,
        cert_file=missing.cert_file,
        key_file=str(pki.other_key),
        ca_file=missing.ca_file,
    )
    with pytest.raises(StartupError, match="do not form a usable pair"):
        with serving(ScriptedHandlers("pod-1", [0]), security=missing):
            pass
    gone = client_security(pki, pki.client, ca=tmp_path / "absent.crt")
    with pytest.raises(StartupError, match=r"security\.ca_file"):
        channel_credentials(gone)
