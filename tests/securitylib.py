"""Throwaway PKI and JWT material for the security tests: a CA, a server certificate for
127.0.0.1/localhost, client certificates (one from the CA, one self-signed), a JWT secret
and forged tokens. Everything is generated here; nothing comes from outside the repo."""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SECRET = b"s3cr3t-for-tests-" + b"x" * 24 + b"-end"  # 45 bytes
AUDIENCE, ISSUER = "llmkg-tests", "https://issuer.test"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    usages: list[x509.ObjectIdentifier] | None = None,
    hosts: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if hosts:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(signer, hashes.SHA256())


def _write(folder: Path, name: str, cert: x509.Certificate, key: Any) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class Pki:
    folder: Path
    ca: Path
    server: tuple[Path, Path]  # cert, key: 127.0.0.1 and localhost, signed by the CA
    rsa_server: tuple[Path, Path]  # the same with an RSA key (for the ECDHE-RSA suites)
    client: tuple[Path, Path]  # signed by the CA
    stranger: tuple[Path, Path]  # a self-signed client certificate
    other_key: Path  # a key that does not belong to the server certificate
    secret: Path  # the JWT secret, with a trailing newline as editors write it


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert("llmkg test CA", ca_key, None, ca=True)
    ca_path, _ = _write(folder, "ca", ca, ca_key)
    server_key = _key()
    # Server and client usage: with require_client_cert, --health-check presents it.
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    server = _cert("llmkg server", server_key, (ca, ca_key), usages=both, hosts=True)
    rsa_server_key = rsa_key()
    rsa_server = _cert("llmkg server", rsa_server_key, (ca, ca_key), usages=both, hosts=True)
    client_key = _key()
    client = _cert("client-a", client_key, (ca, ca_key), usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    stranger_key = _key()
    stranger = _cert("stranger", stranger_key, None, usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    _, other_key = _write(folder, "mismatch", _cert("mismatch", _key(), None), _key())
    secret = folder / "jwt-secret"
    secret.write_bytes(SECRET + b"\n")
    return Pki(
        folder,
        ca_path,
        _write(folder, "server", server, server_key),
        _write(folder, "rsa-server", rsa_server, rsa_server_key),
        _write(folder, "client", client, client_key),
        _write(folder, "stranger", stranger, stranger_key),
        other_key,
        secret,
    )


def tls_env(pki: Pki, **more: str) -> dict[str, str]:
    return {
        "LLMKG__SECURITY__ENABLE_TLS": "true",
        "LLMKG__SECURITY__CERT_FILE": str(pki.server[0]),
        "LLMKG__SECURITY__KEY_FILE": str(pki.server[1]),
        "LLMKG__SECURITY__CA_FILE": str(pki.ca),
        **more,
    }


def claims(**over: Any) -> dict[str, Any]:
    """Valid access-token claims for the test secret, audience and issuer; ``None`` drops."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "scope": "read write admin",
        "typ": "access",
        "iat": now,
        "exp": now + 600,
        "aud": AUDIENCE,
        "iss": ISSUER,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def forge(
    key: Any = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **over: Any,
) -> str:
    return jwt.encode(claims(**over), key, algorithm=algorithm, headers=headers)


def unsigned(**over: Any) -> str:
    """An ``alg: none`` token (PyJWT writes one when asked, with an empty signature)."""
    return jwt.encode(claims(**over), "", algorithm="none")


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
