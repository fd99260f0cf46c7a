"""Rate limits and the revocation list in process, on a clock the test moves: buckets
refill, an address locked out by failed authentications is served again once its bucket
refills, and the revocation file is re-read only when it changed, at most once a second.
(The same over real HTTPS: test_server_security_jwt.py.)"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from securitylib import SECRET, forge

from llmkg.config import load_settings
from llmkg.server.ratelimit import RateLimiter, per_minute
from llmkg.server.revocation import KEY, RevocationError, RevocationList, parse
from llmkg.server.security import ROUTE_KEY, Security
from llmkg.server.startup import StartupError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- the token bucket ----------------------------------------------------------------------


def test_bucket_holds_burst_and_refills_at_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=0.5, burst=2, clock=clock)
    assert [limiter.take("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("a") == pytest.approx(2.0)  # one token per 2 s
    assert limiter.take("b") == 0.0  # another key, another bucket
    clock.now += 1.0
    assert limiter.wait("a") == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.wait("a") == 0.0
    assert limiter.wait("a") == 0.0  # wait takes nothing
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    clock.now += 3600
    assert [limiter.take("a") for _ in range(3)][:2] == [0.0, 0.0]  # refilled to burst only


def test_per_minute() -> None:
    assert per_minute(0) is None
    clock = Clock()
    limiter = per_minute(3, clock)
    assert limiter is not None
    assert [limiter.take("a") for _ in range(3)] == [0.0] * 3
    assert limiter.take("a") == pytest.approx(20.0)


# ---- the revocation list -------------------------------------------------------------------


def test_parse_ids_comments_and_blanks() -> None:
    text = "# revoked\nabc\n\n  def  # leaked in a log\n#ghi\r\njkl\r\n"
    assert parse(text) == {"abc", "def", "jkl"}


def test_revocation_list_reloads_on_change_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "revoked"
    path.write_text("a\n")
    clock = Clock()
    revoked = RevocationList(str(path), clock)
    assert "a" in revoked and "b" not in revoked and None not in revoked
    path.write_text("b\n# a is back\n")
    assert "a" in revoked  # not looked at again within the interval
    clock.now += 1.0
    assert "b" in revoked and "a" not in revoked
    # Removed (an editor writing it anew): the last list holds until the file is back.
    path.unlink()
    clock.now += 1.0
    assert "b" in revoked
    path.write_text("c\n")
    clock.now += 1.0
    assert "c" in revoked and "b" not in revoked


def test_revocation_file_missing_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(RevocationError) as e:
        RevocationList(str(missing))
    assert KEY in str(e.value) and str(missing) in str(e.value)


# ---- the middleware, failed authentications ------------------------------------------------


def security(tmp_path: Path, clock: Clock, **env: str) -> Security:
    secret = tmp_path / "jwt-secret"
    secret.write_bytes(SECRET)
    prefix = "LLMKG__SECURITY__AUTHENTICATION__"
    environ = {
        f"{prefix}TYPE": "jwt",
        f"{prefix}SECRET_KEY_FILE": str(secret),
        **{prefix + k: v for k, v in env.items()},
    }
    return Security(load_settings(environ=environ), clock)


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def request(sec: Security, client: str, token: str | None) -> tuple[int, dict[bytes, bytes]]:
    """GET a guarded route from ``client``: (status, headers)."""
    app = sec.middleware(_ok, {"/x": {"GET": "read"}})
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": headers}
    scope |= {"client": (client, 40000), ROUTE_KEY: "/x"}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return sent[0]["status"], dict(sent[0]["headers"])


def test_failed_authentications_lock_the_address_out_until_the_bucket_refills(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    sec = security(tmp_path, clock, AUTH_FAILURES_PER_MINUTE="3")
    good = forge(aud=None, iss=None)
    assert request(sec, "10.0.0.1", good)[0] == 200
    with caplog.at_level(logging.WARNING, "llmkg.server"):
        bad = [request(sec, "10.0.0.1", t)[0] for t in ("x.y.z", None, forge(key=b"k" * 32))]
    assert bad == [401, 401, 401]
    assert "10.0.0.1" in caplog.text
    # Locked out: even a good token is refused, so that a guessed one would not pass.
    status, headers = request(sec, "10.0.0.1", good)
    assert status == 429 and int(headers[b"retry-after"]) == 20
    assert request(sec, "10.0.0.2", good)[0] == 200  # another address
    clock.now += 19.0
    assert request(sec, "10.0.0.1", good)[0] == 429
    clock.now += 1.0  # one failure's worth refilled
    assert request(sec, "10.0.0.1", good)[0] == 200
    assert request(sec, "10.0.0.1", "x.y.z")[0] == 401
    assert request(sec, "10.0.0.1", good)[0] == 429
    clock.now += 60.0
    assert request(sec, "10.0.0.1", good)[0] == 200


def test_failures_per_minute_0_is_no_limit(tmp_path: Path) -> None:
    sec = security(tmp_path, Clock(), AUTH_FAILURES_PER_MINUTE="0")
    assert [request(sec, "10.0.0.1", "x.y.z")[0] for _ in range(100)] == [401] * 100


def test_revoked_access_token_is_refused(tmp_path: Path) -> None:
    revoked = tmp_path / "revoked"
    revoked.write_text("# leaked\nleaked-1\n")
    sec = security(tmp_path, Clock(), REVOKED_TOKENS_FILE=str(revoked))
    assert request(sec, "10.0.0.1", forge(aud=None, iss=None, jti="leaked-1"))[0] == 401
    assert request(sec, "10.0.0.1", forge(aud=None, iss=None, jti="fine-1"))[0] == 200
    assert request(sec, "10.0.0.1", forge(aud=None, iss=None))[0] == 200  # no jti


def test_missing_revocation_file_stops_start_up(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(StartupError) as e:
        security(tmp_path, Clock(), REVOKED_TOKENS_FILE=str(missing))
    assert KEY in str(e.value) and str(missing) in str(e.value)
