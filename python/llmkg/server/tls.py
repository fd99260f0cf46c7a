"""TLS for the API listener: the certificate, key and CA files checked at start, the
minimum version and the TLS 1.2 cipher suites from the config, optional client
certificates, and idle TLS connections closed promptly at shutdown."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from llmkg.config import Settings
from llmkg.config.schema import SecuritySettings
from llmkg.server.startup import StartupError, readable

log = logging.getLogger("llmkg.server")

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TlsConfig(uvicorn.Config):
    """uvicorn's config with a floor on the TLS version (uvicorn has no option for it), and
    connections that do not hold up shutdown (see ``ClosingPromptly``)."""

    def __init__(self, *args: Any, min_tls_version: ssl.TLSVersion, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_tls_version = min_tls_version

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            self.ssl.minimum_version = self.min_tls_version
            # The runner always asks for httptools (runner.py): a protocol of another
            # kind would hold up shutdown again, and is refused rather than left so.
            if self.http_protocol_class is not HttpToolsProtocol:
                raise ValueError(f"TLS needs http='httptools', not {self.http_protocol_class}")
            self.http_protocol_class = ClosingPromptly


TLS_CLOSE_GRACE = 1.0  # seconds an idle client gets to answer close_notify at shutdown


class ClosingPromptly(HttpToolsProtocol):
    """At shutdown uvicorn closes idle keep-alive connections; over TLS that close waits for
    the client's close_notify, which a pooled idle client never sends until it next reads:
    SIGTERM then hung for the loop's 30 s SSL shutdown timeout. Abort such connections
    after a short grace instead (the client sees its idle connection drop, as at any
    server restart)."""

    def shutdown(self) -> None:
        super().shutdown()
        if self.transport.is_closing():
            self.loop.call_later(TLS_CLOSE_GRACE, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if self in self.server_state.connections:
            self.transport.abort()


def check_tls_files(security: SecuritySettings) -> None:
    """Refuse missing, unreadable or mismatched certificate and key files, naming them."""
    cert = readable(security.cert_file, "security.cert_file")
    key = readable(security.key_file, "security.key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    asked: list[bool] = []

    def no_passphrase() -> bytes:
        # Without a callback OpenSSL would prompt on the terminal and start-up would hang.
        asked.append(True)
        return b""

    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except ssl.SSLError as e:
        if asked:
            raise StartupError(
                f"security.key_file {key}: the key is encrypted; llmkg needs it unencrypted"
            ) from None
        raise StartupError(
            f"security.cert_file {cert} and security.key_file {key} do not form a usable "
            f"pair ({e.reason or e})"
        ) from None
    if security.require_client_cert:
        ca = readable(security.ca_file, "security.ca_file")
        try:
            context.load_verify_locations(ca)
        except ssl.SSLError as e:
            raise StartupError(f"security.ca_file {ca}: not a CA certificate ({e})") from None


def api_config(app: ASGIApp, settings: Settings, **options: Any) -> uvicorn.Config:
    """The API listener's uvicorn config, with TLS when ``security.enable_tls``."""
    security = settings.security
    if not security.enable_tls:
        return uvicorn.Config(app, **options)
    check_tls_files(security)
    return TlsConfig(
        app,
        ssl_certfile=security.cert_file,
        ssl_keyfile=security.key_file,
        ssl_ca_certs=security.ca_file if security.require_client_cert else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if security.require_client_cert else ssl.CERT_NONE,
        min_tls_version=TLS_VERSIONS[security.min_tls_version],
        # TLS 1.2 only (TLS 1.3 suites are set apart in OpenSSL): uvicorn's default
        # takes CBC suites as well.
        ssl_ciphers=security.tls_ciphers,
        **options,
    )
