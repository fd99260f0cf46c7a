"""TLS of the partition service, from the same ``[security]`` files as the API's HTTPS.

With ``security.enable_tls`` the server presents ``cert_file``/``key_file``, and with
``require_client_cert`` it asks every caller for a certificate signed by ``ca_file``
(mutual TLS). A pod calling its peers checks their certificates against ``ca_file`` and
presents its own ``cert_file`` (so the pods' certificates need the client-auth usage too
when ``require_client_cert`` is on, as for ``llmkg-server --health-check``).

gRPC's TLS is BoringSSL's, configured by gRPC: versions 1.2 and 1.3 with gRPC's AEAD-only
cipher suites. ``security.min_tls_version`` and ``tls_ciphers`` are not applied to this
port (gRPC's Python API has no setting for them).
"""

from __future__ import annotations

import grpc

from llmkg.config.schema import SecuritySettings
from llmkg.server.startup import readable
from llmkg.server.tls import check_tls_files


def server_credentials(security: SecuritySettings) -> grpc.ServerCredentials:
    """The server's credentials; a missing or mismatched file is a ``StartupError``
    naming the key, as for HTTPS."""
    check_tls_files(security)
    key = readable(security.key_file, "security.key_file").read_bytes()
    cert = readable(security.cert_file, "security.cert_file").read_bytes()
    ca = None
    if security.require_client_cert:
        ca = readable(security.ca_file, "security.ca_file").read_bytes()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=security.require_client_cert
    )


def channel_credentials(security: SecuritySettings) -> grpc.ChannelCredentials:
    """A caller's credentials: the peers' certificates are checked against ``ca_file``,
    and the pod's own certificate is presented (a server asks for it only under
    ``require_client_cert``)."""
    ca = readable(security.ca_file, "security.ca_file").read_bytes()
    key = readable(security.key_file, "security.key_file").read_bytes()
    cert = readable(security.cert_file, "security.cert_file").read_bytes()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
