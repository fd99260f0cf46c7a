"""The clients against a real server with TLS, client certificates and JWT: the CA file
and the client certificate, tokens and scopes as the client's errors, and the refresh of
an expired access token: once, only on ``token_expired``, with the server's own
short-lived tokens as well as a forged expired one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
from securitylib import AUDIENCE, ISSUER, Pki, forge, make_pki, tls_env
from serverlib import Server, fact, until

import llmkg
from llmkg.client import AccessToken, ApiConnectionError, ForbiddenError, UnauthorizedError
from llmkg.client.base import tls

NOW = int(time.time())
EXPIRED = {"iat": NOW - 7200, "exp": NOW - 3600}


def secure_env(pki: Pki, **more: str) -> dict[str, str]:
    return tls_env(
        pki,
        LLMKG__SECURITY__REQUIRE_CLIENT_CERT="true",
        LLMKG__SECURITY__AUTHENTICATION__TYPE="jwt",
        LLMKG__SECURITY__AUTHENTICATION__SECRET_KEY_FILE=str(pki.secret),
        LLMKG__SECURITY__AUTHENTICATION__AUDIENCE=AUDIENCE,
        LLMKG__SECURITY__AUTHENTICATION__ISSUER=ISSUER,
        LLMKG__SECURITY__RATE_LIMIT__ENABLED="false",
        # Expired tokens count as failed authentications: many below, from one address.
        LLMKG__SECURITY__AUTHENTICATION__AUTH_FAILURES_PER_MINUTE="100000",
        LLMKG__SECURITY__AUTHENTICATION__REFRESH_PER_MINUTE="100000",
        **more,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def https_server(tmp: Path, pki: Pki, **more: str) -> Server:
    # The fixture's own client (its readiness probes) presents the CA-signed certificate.
    context = tls(pki.ca, pki.client)
    return Server(tmp, env=secure_env(pki, **more), scheme="https", verify=context)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Server]:
    # Access tokens the server mints (at refresh) live two seconds.
    with https_server(
        tmp_path_factory.mktemp("secure"),
        pki,
        LLMKG__SECURITY__AUTHENTICATION__TOKEN_EXPIRY="2s",
    ) as s:
        yield s


def secure_client(server: Server, pki: Pki, **kw: object) -> llmkg.Client:
    return llmkg.Client(server.url, verify=pki.ca, cert=pki.client, **kw)  # type: ignore[arg-type]


# ---- TLS -----------------------------------------------------------------------------------


def test_ca_file_and_client_certificate(server: Server, pki: Pki) -> None:
    with secure_client(server, pki) as c:
        assert c.live().ok
    # One file with the certificate and its key works as well as the pair.
    both = pki.folder / "client-both.pem"
    both.write_bytes(pki.client[0].read_bytes() + pki.client[1].read_bytes())
    with llmkg.Client(server.url, verify=str(pki.ca), cert=both) as c:
        assert c.ready().ok


@pytest.mark.parametrize(
    ("trust", "certificate"),
    [
        pytest.param("public CAs", "client", id="untrusted server certificate"),
        pytest.param("ca", None, id="no client certificate"),
        pytest.param("ca", "stranger", id="self-signed client certificate"),
    ],
)
def test_tls_failures_are_connection_errors(
    server: Server, pki: Pki, trust: str, certificate: str | None
) -> None:
    verify = pki.ca if trust == "ca" else True
    cert = {"client": pki.client, "stranger": pki.stranger}.get(certificate or "")
    with llmkg.Client(server.url, verify=verify, cert=cert, timeout=10) as c:
        with pytest.raises(ApiConnectionError) as raised:
            c.live()
    assert raised.value.status is None


# ---- tokens --------------------------------------------------------------------------------


def test_tokens_and_scopes(server: Server, pki: Pki) -> None:
    with secure_client(server, pki, token=forge(scope="read write")) as c:
        made = c.allocate(fact(1))  # type: ignore[arg-type]
        assert c.get(made.node_id) is not None
    with secure_client(server, pki) as c, pytest.raises(UnauthorizedError) as raised:
        c.get(1)
    assert raised.value.code == "unauthorized" and raised.value.status == 401
    with secure_client(server, pki, token=forge(scope="read")) as c:
        with pytest.raises(ForbiddenError) as forbidden:
            c.allocate(fact(2))  # type: ignore[arg-type]
        assert forbidden.value.code == "forbidden"
        assert c.search(text="s1")  # its scope's routes are served


def test_an_expired_token_is_refreshed_once(server: Server, pki: Pki) -> None:
    expired = forge(**EXPIRED)
    refresh = forge(typ="refresh", scope="read write")
    with secure_client(server, pki, token=expired, refresh_token=refresh) as c:
        made = c.allocate(fact(3))  # type: ignore[arg-type]
        fresh = c.token
        assert fresh is not None and fresh != expired
        claims = jwt.decode(fresh, options={"verify_signature": False})
        assert (claims["typ"], claims["scope"]) == ("access", "read write")
        assert c.get(made.node_id) is not None and c.token == fresh  # no second refresh


class CountingClient(llmkg.Client):
    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.refreshes = 0

    def _refresh_locked(self) -> AccessToken:
        self.refreshes += 1
        return super()._refresh_locked()


def test_threads_that_find_the_token_expired_refresh_it_once(server: Server, pki: Pki) -> None:
    refresh = forge(typ="refresh", scope="read")
    with CountingClient(server.url, forge(**EXPIRED), refresh, verify=pki.ca, cert=pki.client) as c:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: c.search(text="x"), range(32)))
        assert len(answers) == 32 and c.refreshes == 1


def test_the_servers_short_lived_tokens_are_refreshed_as_they_expire(
    server: Server, pki: Pki
) -> None:
    # The server mints 2-second access tokens: calls in a loop see one expire and the
    # client swap it for a new one, with no call failing.
    refresh = forge(typ="refresh", scope="read")
    with secure_client(server, pki, token=forge(**EXPIRED), refresh_token=refresh) as c:
        c.search(text="x")
        first = c.token
        until(lambda: bool(c.search(text="x") is not None and c.token != first), 30, "a refresh")


def test_no_refresh_without_a_refresh_token_or_for_other_refusals(server: Server, pki: Pki) -> None:
    with secure_client(server, pki, token=forge(**EXPIRED)) as c:
        with pytest.raises(UnauthorizedError) as raised:
            c.search(text="x")
    assert raised.value.code == "token_expired"
    forged = forge(key=b"another-secret-of-32-bytes-or-more!")
    refresh = forge(typ="refresh", scope="read")
    with secure_client(server, pki, token=forged, refresh_token=refresh) as c:
        with pytest.raises(UnauthorizedError) as raised:
            c.search(text="x")
        assert raised.value.code == "unauthorized" and c.token == forged


def test_an_expired_refresh_token_is_the_error(server: Server, pki: Pki) -> None:
    stale = forge(typ="refresh", **EXPIRED)
    with secure_client(server, pki, token=forge(**EXPIRED), refresh_token=stale) as c:
        with pytest.raises(UnauthorizedError) as raised:
            c.search(text="x")
        assert raised.value.code == "token_expired"
        assert "refresh" in raised.value.message
        with pytest.raises(UnauthorizedError):
            c.refresh()


def test_refresh_on_demand(server: Server, pki: Pki) -> None:
    with secure_client(server, pki, refresh_token=forge(typ="refresh", scope="read")) as c:
        answer = c.refresh()
        assert isinstance(answer, AccessToken) and answer.expires_in == 2
        assert c.token == answer.access_token and c.search(text="x") is not None
    with secure_client(server, pki) as c, pytest.raises(ValueError):
        c.refresh()


# ---- the async client ----------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_client_over_tls_refreshes_an_expired_token(server: Server, pki: Pki) -> None:
    expired = forge(**EXPIRED)
    refresh = forge(typ="refresh", scope="read write")
    async with llmkg.AsyncClient(server.url, expired, refresh, verify=pki.ca, cert=pki.client) as c:
        made = await c.allocate(fact(4))  # type: ignore[arg-type]
        assert c.token not in (None, expired)
        node = await c.get(made.node_id)
        assert node is not None and node.subject == "s4"
    async with llmkg.AsyncClient(server.url, verify=pki.ca) as c:
        with pytest.raises(ApiConnectionError):
            await c.live()  # no client certificate
