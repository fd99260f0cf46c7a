"""JWT bearer tokens: the shared secret, scopes, and the access and refresh tokens llmkg
mints and checks.

Tokens are HS256 (or the configured HMAC algorithm) JWTs signed with the bytes of
``secret_key_file``; PyJWT checks them with the algorithm list pinned to the configured
one, so ``alg: none`` or another algorithm never verifies. Refresh tokens carry the claim
``typ: refresh`` and are never accepted as access tokens, nor anything else at refresh;
an access token is llmkg's (``typ: access``) or another issuer's standard one, without a
``typ`` claim or with RFC 9068's ``typ: at+jwt`` header.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import jwt

from llmkg.config.schema import AuthenticationSettings
from llmkg.server.revocation import RevocationList
from llmkg.server.startup import StartupError, readable

MIN_SECRET_BYTES = 32
SCOPES = ("read", "write", "admin")


def read_secret(auth: AuthenticationSettings) -> bytes:
    path = readable(auth.secret_key_file, "security.authentication.secret_key_file")
    secret = path.read_bytes().rstrip()
    if len(secret) < MIN_SECRET_BYTES:
        state = "empty" if not secret else f"{len(secret)} bytes"
        raise StartupError(
            f"security.authentication.secret_key_file {path}: the secret is {state}; "
            f"it must be at least {MIN_SECRET_BYTES} bytes"
        )
    return secret


def split_scopes(text: str) -> list[str]:
    """The scopes of a ``scope`` claim or option (space- or comma-separated)."""
    return [s for s in re.split(r"[\s,]+", text.strip()) if s]


def parse_scopes(text: str) -> list[str]:
    """The scopes of ``text``, which must be among ``SCOPES`` (at least one)."""
    scopes = split_scopes(text)
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}; got {text!r}")
    return scopes


# JOSE header ``typ`` values of an access token: PyJWT's default, and RFC 9068's (whose
# "application/" prefix may be left out, compared without case).
ACCESS_HEADER_TYPES = ("jwt", "at+jwt")


def token_kind(header: dict[str, Any], claims: dict[str, Any]) -> str | None:
    """ "refresh" for a token marked as one (llmkg's ``typ: refresh`` claim), "access" for
    the others other issuers mint with the shared secret (no ``typ`` claim, or RFC 9068's
    ``typ: at+jwt`` header), None for a type llmkg does not know (refused as either)."""
    claim = claims.get("typ")
    if claim == "refresh":
        return "refresh"
    if claim not in (None, "access"):
        return None
    typ = header.get("typ")
    if typ is None:
        return "access"
    if not isinstance(typ, str):
        return None
    typ = typ.lower().removeprefix("application/")
    return "access" if typ in ACCESS_HEADER_TYPES else None


class Tokens:
    def __init__(self, auth: AuthenticationSettings, revoked: RevocationList | None = None) -> None:
        self.auth = auth
        self.secret = read_secret(auth)
        self.revoked = revoked

    def mint(self, subject: str, scopes: list[str], kind: str, expiry: float) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": subject,
            "scope": " ".join(scopes),
            "typ": kind,
            "iat": now,
            "nbf": now,
            "exp": now + int(expiry),
            "jti": uuid.uuid4().hex,
        }
        if self.auth.audience:
            claims["aud"] = self.auth.audience
        if self.auth.issuer:
            claims["iss"] = self.auth.issuer
        return jwt.encode(claims, self.secret, algorithm=self.auth.algorithm)

    def pair(self, subject: str, scopes: list[str], expiry: float | None = None) -> dict[str, Any]:
        access_expiry = expiry or self.auth.token_expiry
        return {
            "access_token": self.mint(subject, scopes, "access", access_expiry),
            "refresh_token": self.mint(subject, scopes, "refresh", self.auth.refresh_token_expiry),
            "token_type": "Bearer",
            "expires_in": int(access_expiry),
        }

    def verify(self, token: str, kind: str) -> dict[str, Any]:
        """The claims of a valid ``kind`` token; ``jwt.InvalidTokenError`` otherwise."""
        decoded = jwt.decode_complete(
            token,
            self.secret,
            algorithms=[self.auth.algorithm],
            audience=self.auth.audience or None,
            issuer=self.auth.issuer or None,
            options={"require": ["exp", "iat", "sub"]},
        )
        claims: dict[str, Any] = decoded["payload"]
        if token_kind(decoded["header"], claims) != kind:
            raise jwt.InvalidTokenError(
                f"not {'a refresh' if kind == 'refresh' else 'an access'} token"
            )
        if not isinstance(claims.get("scope", ""), str):
            raise jwt.InvalidTokenError("scope must be a string")
        if self.revoked is not None and claims.get("jti") in self.revoked:
            raise jwt.InvalidTokenError("the token is revoked")
        return claims
