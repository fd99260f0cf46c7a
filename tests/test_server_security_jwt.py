"""JWT and limits over real HTTPS: every rejected token answers 401 with the JSON
error and ``WWW-Authenticate: Bearer``, scopes allow exactly their routes, operator tokens
and refresh work, secrets stop start-up when unusable and never reach a log, rate limits
per subject and per address, probes and metrics stay open. (TLS: test_server_security.py.)"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from securitylib import AUDIENCE, ISSUER, SECRET, Pki, forge, make_pki, rsa_key, tls_env, unsigned
from serverlib import CONFIG, Server, cli, fact

RATE = {
    "LLMKG__SECURITY__RATE_LIMIT__ENABLED": "true",
    "LLMKG__SECURITY__RATE_LIMIT__REQUESTS_PER_SECOND": "0.5",
    "LLMKG__SECURITY__RATE_LIMIT__BURST": "3",
}


def jwt_env(pki: Pki, **more: str) -> dict[str, str]:
    jwt_keys = {
        "LLMKG__SECURITY__AUTHENTICATION__TYPE": "jwt",
        "LLMKG__SECURITY__AUTHENTICATION__SECRET_KEY_FILE": str(pki.secret),
        "LLMKG__SECURITY__AUTHENTICATION__AUDIENCE": AUDIENCE,
        "LLMKG__SECURITY__AUTHENTICATION__ISSUER": ISSUER,
        "LLMKG__SECURITY__RATE_LIMIT__ENABLED": "false",
        # Many refusals from one address below: the limits on failed authentications
        # and refreshes have their own server (limits_api).
        "LLMKG__SECURITY__AUTHENTICATION__AUTH_FAILURES_PER_MINUTE": "100000",
        "LLMKG__SECURITY__AUTHENTICATION__REFRESH_PER_MINUTE": "100000",
        "LLMKG__LOGGING__LEVEL": "debug",
        "LLMKG__LOGGING__ACCESS_LOG": "true",
    }
    return tls_env(pki, **{**jwt_keys, **more})


def https_server(tmp: Path, pki: Pki, env: dict[str, str], **kw: Any) -> Server:
    return Server(
        tmp, env=env, scheme="https", verify=ssl.create_default_context(cafile=pki.ca), **kw
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Server]:
    with https_server(tmp_path_factory.mktemp("jwt"), pki, jwt_env(pki)) as server:
        yield server


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def search(server: Server, headers: dict[str, str]) -> httpx.Response:
    return server.post("/api/v1/search", {"query": {"text": "x", "k": 1}}, headers=headers)


def assert_401(response: httpx.Response, *leaks: str, code: str = "unauthorized") -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    for leak in [SECRET.decode(), *leaks]:
        assert leak not in response.text


# ---- rejected tokens -----------------------------------------------------------------------


def _swapped_signature() -> str:
    head, payload, _ = forge().split(".")
    return f"{head}.{payload}.{forge(sub='bob').split('.')[2]}"


NOW = int(time.time())
AT_JWT = {"typ": "at+jwt"}  # RFC 9068's header of a JWT access token
REJECTED: dict[str, Any] = {
    "no token": None,
    "no scheme": "{valid}",
    "basic scheme": "Basic {valid}",
    "bearer without token": "Bearer",
    "bearer with two parts": "Bearer {valid} extra",
    "not a jwt": "Bearer not-a-jwt",
    "three garbage segments": "Bearer a.b.c",
    "bad signature": lambda: _swapped_signature(),
    "another secret": lambda: forge(key=b"another-secret-of-32-bytes-or-more!"),
    "alg none": lambda: unsigned(),
    "alg none, signature kept": lambda: unsigned() + forge().split(".")[2],
    "HS512 with the secret": lambda: forge(algorithm="HS512"),
    "RS256": lambda: forge(key=rsa_key(), algorithm="RS256"),
    "expired": lambda: forge(iat=NOW - 7200, exp=NOW - 3600),
    "not yet valid": lambda: forge(nbf=NOW + 3600),
    "no exp": lambda: forge(exp=None),
    "no sub": lambda: forge(sub=None),
    "wrong audience": lambda: forge(aud="someone-else"),
    "no audience": lambda: forge(aud=None),
    "wrong issuer": lambda: forge(iss="https://evil.test"),
    "no issuer": lambda: forge(iss=None),
    "refresh token as access": lambda: forge(typ="refresh"),
    "refresh token with an at+jwt header": lambda: forge(typ="refresh", headers=AT_JWT),
    "typ claim of another kind": lambda: forge(typ="id"),
    "typ header of another kind": lambda: forge(typ=None, headers={"typ": "dpop+jwt"}),
}


def test_a_valid_token_passes(api: Server) -> None:
    # The control for every 401 below: the same request with a good token is served.
    assert search(api, bearer(forge())).status_code == 200


# Standard access tokens another issuer mints with the shared secret: no typ claim
# (llmkg's is its own), or RFC 9068's header; only a token marked refresh is one.
STANDARD_ACCESS: dict[str, Any] = {
    "no typ claim": lambda: forge(typ=None),
    "at+jwt header": lambda: forge(typ=None, headers=AT_JWT),
    "application/at+jwt header": lambda: forge(typ=None, headers={"typ": "application/AT+JWT"}),
    "at+jwt header and typ access": lambda: forge(headers=AT_JWT),
}


@pytest.mark.parametrize("case", STANDARD_ACCESS)
def test_standard_access_tokens_are_accepted(api: Server, case: str) -> None:
    token = STANDARD_ACCESS[case]()
    assert search(api, bearer(token)).status_code == 200


@pytest.mark.parametrize("case", STANDARD_ACCESS)
def test_standard_access_tokens_are_no_refresh_tokens(api: Server, case: str) -> None:
    token = STANDARD_ACCESS[case]()
    assert_401(api.post("/api/v1/auth/refresh", {"refresh_token": token}), token)


@pytest.mark.parametrize("case", REJECTED)
def test_rejected_with_401(api: Server, case: str) -> None:
    given = REJECTED[case]
    if given is None:
        headers, token = {}, ""
    elif callable(given):
        token = given()
        headers = bearer(token)
    else:
        token = forge()
        headers = {"Authorization": given.format(valid=token)}
    response = search(api, headers)
    # Only a token of ours past its exp says so (a client refreshes it); a forged one
    # fails its signature first.
    code = "token_expired" if case == "expired" else "unauthorized"
    assert_401(response, *([token] if token else []), code=code)
    # RFC 6750: no error code when no credentials were sent at all.
    assert ("error=" in response.headers["www-authenticate"]) == (given is not None)


def test_head_on_a_guarded_route_needs_a_token(api: Server) -> None:
    # Starlette answers HEAD on GET routes: it must not skip authentication.
    for path in ("/api/v1/stats", "/api/v1/nodes/1"):
        r = api.client.head(path)  # (no body to a HEAD)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert api.client.head("/api/v1/stats", headers=bearer(forge())).status_code == 200


def test_unknown_method_on_a_guarded_route_needs_a_token(api: Server) -> None:
    assert_401(api.client.put("/api/v1/stats"))


# ---- scopes --------------------------------------------------------------------------------


def test_each_scope_allows_exactly_its_routes(api: Server) -> None:
    writer = bearer(forge(scope="write"))
    made = [api.post("/api/v1/allocate", {"fact": fact(i)}, headers=writer) for i in (1, 2)]
    assert [r.status_code for r in made] == [200, 200]
    keep, drop = (r.json()["node_id"] for r in made)
    routes = {
        ("POST", "/api/v1/allocate", json.dumps({"fact": fact(3)})): "write",
        ("POST", "/api/v1/allocate/batch", json.dumps({"facts": [fact(4)]})): "write",
        ("DELETE", f"/api/v1/nodes/{drop}", None): "write",
        ("POST", "/api/v1/search", json.dumps({"query": {"text": "s1", "k": 1}})): "read",
        ("GET", f"/api/v1/nodes/{keep}", None): "read",
        ("POST", "/api/v1/traverse", json.dumps({"start": {"nodes": [keep]}})): "read",
        ("GET", "/api/v1/export", None): "read",
        ("GET", "/api/v1/stats", None): "admin",
        ("POST", "/api/v1/admin/checkpoint", None): "admin",
        ("POST", "/api/v1/admin/backup", None): "admin",
    }
    json_type = {"Content-Type": "application/json"}
    for (method, path, body), needed in routes.items():
        for scope in ("read", "write", "admin"):
            headers = {**bearer(forge(scope=scope)), **json_type}
            r = api.client.request(method, path, content=body, headers=headers)
            if scope == needed:
                assert r.status_code == 200, (method, path, scope, r.text)
            else:
                assert r.status_code == 403, (method, path, scope, r.text)
                assert r.json()["error"]["code"] == "forbidden"
                assert needed in r.json()["error"]["message"]
                assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_token_without_scope_claim_is_forbidden(api: Server) -> None:
    assert search(api, bearer(forge(scope=None))).status_code == 403


# ---- operator tokens and refresh -----------------------------------------------------------


def mint(pki: Pki, *args: str) -> dict[str, Any]:
    result = cli("token", *args, env=jwt_env(pki))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_token_command_mints_access_and_refresh(api: Server, pki: Pki) -> None:
    pair = mint(pki, "--subject", "ops", "--scope", "read,write", "--expiry", "1h")
    access, refresh = pair["access_token"], pair["refresh_token"]
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == 3600
    claims = jwt.decode(access, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    assert (claims["sub"], claims["scope"], claims["aud"], claims["iss"]) == (
        "ops",
        "read write",
        AUDIENCE,
        ISSUER,
    )
    # Each token has its own id, for the revocation list.
    refresh_claims = jwt.decode(refresh, options={"verify_signature": False})
    assert claims["jti"] and refresh_claims["jti"] and claims["jti"] != refresh_claims["jti"]
    assert search(api, bearer(access)).status_code == 200
    assert api.client.get("/api/v1/stats", headers=bearer(access)).status_code == 403
    assert_401(search(api, bearer(refresh)), refresh)  # a refresh token is no access token


def test_token_command_refuses_unknown_scopes(pki: Pki) -> None:
    result = cli("token", "--subject", "ops", "--scope", "read,root", env=jwt_env(pki))
    assert result.returncode == 2 and "root" in result.stderr


def test_refresh_returns_a_new_access_token(api: Server, pki: Pki) -> None:
    pair = mint(pki, "--subject", "ops", "--scope", "admin")
    r = api.post("/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert r.status_code == 200, r.text
    fresh = r.json()["access_token"]
    assert fresh != pair["access_token"] and r.json()["token_type"] == "Bearer"
    claims = jwt.decode(fresh, options={"verify_signature": False})
    assert (claims["sub"], claims["scope"]) == ("ops", "admin") and claims["jti"]
    assert api.client.get("/api/v1/stats", headers=bearer(fresh)).status_code == 200


@pytest.mark.parametrize(
    "given",
    ["access token", "forged refresh", "expired refresh", "refresh without scope", "garbage"],
)
def test_refresh_refuses_anything_but_a_refresh_token(api: Server, pki: Pki, given: str) -> None:
    token = {
        "access token": lambda: mint(pki, "--subject", "ops", "--scope", "read")["access_token"],
        "forged refresh": lambda: forge(key=b"another-secret-of-32-bytes-or-more!", typ="refresh"),
        "expired refresh": lambda: forge(typ="refresh", iat=NOW - 7200, exp=NOW - 3600),
        # (llmkg never mints one; refresh must not grant a default scope for it)
        "refresh without scope": lambda: forge(typ="refresh", scope=""),
        "garbage": lambda: "garbage",
    }[given]()
    code = "token_expired" if given == "expired refresh" else "unauthorized"
    assert_401(api.post("/api/v1/auth/refresh", {"refresh_token": token}), token, code=code)


# ---- what stays open -----------------------------------------------------------------------


def test_probes_and_openapi_stay_open(api: Server) -> None:
    for path in ("/health/live", "/health/ready", "/openapi.json"):
        assert api.client.get(path).status_code == 200, path


def test_metrics_listener_has_no_auth(api: Server) -> None:
    r = httpx.get(f"{api.metrics_url}/metrics", timeout=10)
    assert r.status_code == 200 and "llmkg" in r.text


# ---- the secret file -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [None, b"", b" \n\n", SECRET[:31] + b"\n"], ids=["missing", "empty", "blank", "31"]
)
def test_unusable_secret_stops_start_up(tmp_path: Path, pki: Pki, content: bytes | None) -> None:
    secret = tmp_path / "jwt-secret"
    if content is not None:
        secret.write_bytes(content)
    env = jwt_env(pki, LLMKG__SECURITY__AUTHENTICATION__SECRET_KEY_FILE=str(secret))
    server = Server(tmp_path, env)  # for its ports and data directory; it is not started
    server.client.close()
    result = cli(env=server.env)
    assert result.returncode == 2, result.stderr
    assert "secret_key_file" in result.stderr and str(secret) in result.stderr
    assert SECRET[:31].decode() not in result.stderr + result.stdout


def test_secret_of_32_bytes_is_enough(tmp_path: Path, pki: Pki) -> None:
    secret = tmp_path / "jwt-secret"
    secret.write_bytes(SECRET[:32] + b"\n")
    env = jwt_env(pki, LLMKG__SECURITY__AUTHENTICATION__SECRET_KEY_FILE=str(secret))
    result = cli("token", "--subject", "a", "--scope", "read", env=env)
    assert result.returncode == 0, result.stderr
    token = json.loads(result.stdout)["access_token"]
    # Trailing whitespace is not part of the key.
    jwt.decode(token, SECRET[:32], algorithms=["HS256"], audience=AUDIENCE)


# ---- secrets never in logs -----------------------------------------------------------------


def test_secrets_never_in_logs_errors_or_check_config(api: Server, pki: Pki) -> None:
    tokens = [forge(), forge(sub="bob", scope="read"), _swapped_signature(), forge(exp=NOW - 60)]
    pair = mint(pki, "--subject", "carol", "--scope", "read")
    tokens += [pair["access_token"], pair["refresh_token"]]
    for token in tokens:
        for headers in (bearer(token), {"Authorization": token}):
            search(api, headers)
            api.client.get("/api/v1/stats", headers=headers)
        api.post("/api/v1/auth/refresh", {"refresh_token": token})
    check = cli("--check-config", env=jwt_env(pki))
    assert check.returncode == 0
    logs = api.logs()
    assert '"logger":"llmkg.access"' in logs  # the access log was on
    for text in (logs, check.stdout + check.stderr):
        assert SECRET.decode() not in text
        for token in tokens:
            _, payload, signature = token.split(".")  # (the header is the same in all)
            assert token not in text and payload not in text and signature not in text


# ---- rate limits ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Server]:
    with https_server(tmp_path_factory.mktemp("rate"), pki, jwt_env(pki, **RATE)) as server:
        yield server


def assert_429(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"


def test_rate_limit_per_subject(limited: Server) -> None:
    alice = bearer(forge(sub="rl-alice", scope="read"))
    assert [search(limited, alice).status_code for _ in range(3)] == [200, 200, 200]
    assert_429(search(limited, alice))
    # The bucket is the subject's, not the token's: a new token for alice is limited too.
    assert_429(search(limited, bearer(forge(sub="rl-alice", scope="read", jti="2"))))
    # bob has his own bucket.
    bob = bearer(forge(sub="rl-bob", scope="read"))
    assert search(limited, bob).status_code == 200


def test_rate_limit_per_address_without_auth(tmp_path: Path, pki: Pki) -> None:
    env = tls_env(pki, LLMKG__SECURITY__AUTHENTICATION__TYPE="none", **RATE)
    with https_server(tmp_path, pki, env) as server:
        assert [search(server, {}).status_code for _ in range(3)] == [200, 200, 200]
        assert_429(search(server, {}))
        # From another loopback address: another client, with its own bucket.
        ctx = ssl.create_default_context(cafile=pki.ca)
        transport = httpx.HTTPTransport(verify=ctx, local_address="127.0.0.2")
        with httpx.Client(base_url=server.url, transport=transport, timeout=30) as other:
            r = other.post("/api/v1/search", json={"query": {"text": "x", "k": 1}})
            assert r.status_code == 200, r.text


def test_development_overlay_turns_the_rate_limit_off(tmp_path: Path, pki: Pki) -> None:
    base = ["--config", str(CONFIG / "production.toml")]
    dev = [*base, "--environment", "development"]
    checked = {}
    for name, args in (("production", base), ("development", dev)):
        result = cli(*args, "--check-config")
        checked[name] = json.loads(result.stdout)["security"]["rate_limit"]["enabled"]
    assert checked == {"production": True, "development": False}
    # The production config under the development overlay, with the tiny rate that
    # refuses the 4th request above: nothing is refused.
    env = jwt_env(pki, **RATE)
    del env["LLMKG__SECURITY__RATE_LIMIT__ENABLED"]
    with https_server(tmp_path, pki, env, args=dev) as server:
        token = bearer(forge(sub="dev", scope="read"))
        assert [search(server, token).status_code for _ in range(6)] == [200] * 6


# ---- failed authentications, refreshes and revoked tokens ----------------------------------

LIMITS = {
    "LLMKG__SECURITY__AUTHENTICATION__AUTH_FAILURES_PER_MINUTE": "3",
    "LLMKG__SECURITY__AUTHENTICATION__REFRESH_PER_MINUTE": "2",
}
REVOKED = "# leaked in a log\nrevoked-refresh\nrevoked-access  # and this one\n"


@pytest.fixture(scope="module")
def limits_api(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("limits")
    revoked = tmp / "revoked"
    revoked.write_text(REVOKED)
    env = jwt_env(pki, **LIMITS, LLMKG__SECURITY__AUTHENTICATION__REVOKED_TOKENS_FILE=str(revoked))
    with https_server(tmp, pki, env) as server:
        yield server


def client_at(server: Server, pki: Pki, address: str) -> httpx.Client:
    """A client of ``server`` from another loopback address (another client address
    to the server's limits): each test below has its own."""
    ctx = ssl.create_default_context(cafile=pki.ca)
    transport = httpx.HTTPTransport(verify=ctx, local_address=address)
    return httpx.Client(base_url=server.url, transport=transport, timeout=30)


def refresh_with(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def search_with(client: httpx.Client, token: str | None) -> httpx.Response:
    headers = bearer(token) if token else {}
    return client.post("/api/v1/search", json={"query": {"text": "x", "k": 1}}, headers=headers)


def test_refresh_is_rate_limited_per_address(limits_api: Server, pki: Pki) -> None:
    token = forge(typ="refresh", jti="refresh-limit")
    with (
        client_at(limits_api, pki, "127.0.0.11") as one,
        client_at(limits_api, pki, "127.0.0.12") as other,
    ):
        assert [refresh_with(one, token).status_code for _ in range(2)] == [200, 200]
        refused = refresh_with(one, token)
        assert_429(refused)
        assert "refresh" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) <= 30  # 2 a minute: one per 30 s
        assert refresh_with(other, token).status_code == 200


def test_failed_authentications_are_rate_limited_per_address(limits_api: Server, pki: Pki) -> None:
    good = forge(sub="fail-limit", scope="read")
    with (
        client_at(limits_api, pki, "127.0.0.13") as one,
        client_at(limits_api, pki, "127.0.0.14") as other,
    ):
        assert search_with(one, good).status_code == 200
        bad = [forge(key=b"another-secret-of-32-bytes-or-more!"), None, "a.b.c"]
        for token in bad:
            assert_401(search_with(one, token))
        # Past the limit the address is refused even a good token (a guessed token must
        # not get through), at the refresh endpoint too; other addresses are served.
        refused = search_with(one, good)
        assert_429(refused)
        assert "failed authentications" in refused.json()["error"]["message"]
        assert_429(refresh_with(one, forge(typ="refresh")))
        assert search_with(other, good).status_code == 200


def test_failed_refreshes_count_as_failed_authentications(limits_api: Server, pki: Pki) -> None:
    with client_at(limits_api, pki, "127.0.0.15") as one:
        # (Two: the third refresh would meet the limit on refreshes first.)
        for token in (forge(), forge(typ="refresh", jti="revoked-refresh")):
            assert_401(refresh_with(one, token))
        assert_401(search_with(one, "garbage"))
        refused = search_with(one, forge())
        assert_429(refused)
        assert "failed authentications" in refused.json()["error"]["message"]


def test_revoked_tokens_are_refused(limits_api: Server, pki: Pki) -> None:
    with client_at(limits_api, pki, "127.0.0.16") as one:
        assert_401(refresh_with(one, forge(typ="refresh", jti="revoked-refresh")))
        assert refresh_with(one, forge(typ="refresh", jti="kept-refresh")).status_code == 200
        revoked = search_with(one, forge(jti="revoked-access"))
        assert_401(revoked)
        assert "revoked" in revoked.json()["error"]["message"]
        assert search_with(one, forge(jti="kept-access")).status_code == 200


def test_revocation_file_reloaded_without_restart(tmp_path: Path, pki: Pki) -> None:
    revoked = tmp_path / "revoked"
    revoked.write_text(REVOKED)
    env = jwt_env(pki, LLMKG__SECURITY__AUTHENTICATION__REVOKED_TOKENS_FILE=str(revoked))
    with https_server(tmp_path, pki, env) as server:
        late, early = forge(jti="revoked-late"), forge(jti="revoked-access")
        assert search(server, bearer(late)).status_code == 200
        assert_401(search(server, bearer(early)))
        revoked.write_text("revoked-late\n")  # and revoked-access no longer
        deadline = time.monotonic() + 30
        while search(server, bearer(late)).status_code == 200:
            assert time.monotonic() < deadline, "the revocation list was not re-read"
            time.sleep(0.05)
        assert_401(search(server, bearer(late)))
        # The whole file was read anew.
        assert search(server, bearer(early)).status_code == 200


def test_missing_revocation_file_stops_start_up(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "nope"
    env = jwt_env(pki, LLMKG__SECURITY__AUTHENTICATION__REVOKED_TOKENS_FILE=str(missing))
    server = Server(tmp_path, env)  # for its ports and data directory; it is not started
    server.client.close()
    result = cli(env=server.env)
    assert result.returncode == 2, result.stderr
    assert "revoked_tokens_file" in result.stderr and str(missing) in result.stderr
