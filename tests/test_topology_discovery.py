"""Peer discovery (llmkg.topology.discovery): a static list; the Kubernetes Service's DNS
name with an injected resolver and clock (changes reported, failures keeping the last
list and logged once, the refresh interval); a real resolution of localhost; the
background thread."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence

import pytest

from llmkg.config import load_settings
from llmkg.topology.discovery import (
    DnsDiscovery,
    StaticDiscovery,
    from_settings,
    resolve_addresses,
    service_host,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeDns:
    """Answers with ``answer``, or raises when it is an exception; counts the lookups."""

    def __init__(self, answer: Sequence[str] | OSError) -> None:
        self.answer = answer
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append((host, port))
        if isinstance(self.answer, OSError):
            raise self.answer
        return self.answer


def discovery(dns: FakeDns, clock: FakeClock, interval: float = 10.0) -> tuple[DnsDiscovery, list]:
    changes: list[tuple[str, ...]] = []
    d = DnsDiscovery("svc.ns.svc", 8081, interval, changes.append, dns, clock)
    return d, changes


def test_static_peers_are_reported_once_as_given() -> None:
    changes: list[tuple[str, ...]] = []
    d = StaticDiscovery(["127.0.0.1:18082", "127.0.0.1:18081", "[::1]:18083"], changes.append)
    d.start()
    assert changes == [("127.0.0.1:18081", "127.0.0.1:18082", "[::1]:18083")]
    assert d.peers == changes[0]
    d.stop()
    with pytest.raises(ValueError, match="host:port"):
        StaticDiscovery(["127.0.0.1"], changes.append)


def test_changes_are_reported_and_an_unchanged_answer_is_not() -> None:
    dns, clock = FakeDns(["10.0.0.2:8081", "10.0.0.1:8081"]), FakeClock()
    d, changes = discovery(dns, clock)
    assert d.poll() == 10.0
    assert changes == [("10.0.0.1:8081", "10.0.0.2:8081")]
    assert dns.lookups == [("svc.ns.svc", 8081)]
    clock.now += 10
    d.poll()
    assert len(changes) == 1  # same answer, in another order: no change
    dns.answer = ["10.0.0.1:8081", "10.0.0.3:8081"]
    clock.now += 10
    d.poll()
    assert changes[-1] == ("10.0.0.1:8081", "10.0.0.3:8081") == d.peers


def test_the_name_is_resolved_again_only_once_the_interval_has_passed() -> None:
    dns, clock = FakeDns(["10.0.0.1:8081"]), FakeClock()
    d, _ = discovery(dns, clock, interval=30)
    d.poll()
    clock.now += 29.5
    assert d.poll() == pytest.approx(0.5)
    assert len(dns.lookups) == 1
    clock.now += 0.5
    assert d.poll() == 30
    assert len(dns.lookups) == 2


def test_failures_keep_the_last_list_and_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="llmkg.topology.discovery")
    dns, clock = FakeDns(["10.0.0.1:8081", "10.0.0.2:8081"]), FakeClock()
    d, changes = discovery(dns, clock)
    d.poll()
    for answer in (socket.gaierror(-2, "Name or service not known"), [], OSError("timeout")):
        dns.answer = answer
        clock.now += 10
        d.poll()
        assert d.peers == ("10.0.0.1:8081", "10.0.0.2:8081") and d.failing
    assert len(changes) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "keeping the last 2 peers" in warnings[0].getMessage()
    dns.answer = ["10.0.0.2:8081"]
    clock.now += 10
    d.poll()
    assert not d.failing and changes[-1] == ("10.0.0.2:8081",)
    assert any("resolves again" in r.getMessage() for r in caplog.records)
    dns.answer = OSError("down again")
    clock.now += 10
    d.poll()  # a new streak of failures is logged again
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_a_failing_callback_does_not_stop_discovery() -> None:
    dns, clock = FakeDns(["10.0.0.1:8081"]), FakeClock()

    def broken(peers: tuple[str, ...]) -> None:
        raise RuntimeError("router bug")

    d = DnsDiscovery("svc", 8081, 10, broken, dns, clock)
    d.poll()
    assert d.peers == ("10.0.0.1:8081",)


def test_localhost_resolves_with_the_system_resolver() -> None:
    found = resolve_addresses("localhost", 18081)
    assert found and set(found) <= {"127.0.0.1:18081", "[::1]:18081"}, found


def test_ipv6_answers_are_bracketed() -> None:
    def getaddrinfo(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::2", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port)),
        ]

    assert resolve_addresses("x", 8081, getaddrinfo) == ("10.0.0.1:8081", "[fd00::2]:8081")


def test_the_thread_refreshes_until_stopped() -> None:
    dns = FakeDns(["127.0.0.1:18081"])
    changed = threading.Event()
    seen: list[tuple[str, ...]] = []

    def on_change(peers: tuple[str, ...]) -> None:
        seen.append(peers)
        changed.set()

    d = DnsDiscovery("localhost", 18081, 0.05, on_change, dns)
    d.start()
    try:
        assert changed.wait(10)
        changed.clear()
        dns.answer = ["127.0.0.1:18081", "127.0.0.2:18081"]
        assert changed.wait(10), "the new answer was not picked up"
        assert seen[-1] == ("127.0.0.1:18081", "127.0.0.2:18081")
    finally:
        d.stop()
    # Joined: no lookup can follow.
    assert d._thread is not None and not d._thread.is_alive()


def test_from_settings() -> None:
    k8s = load_settings(environ={}).scalability.distribution
    dns = FakeDns(["10.0.0.1:8081"])
    d = from_settings(k8s, lambda peers: None, dns, FakeClock())
    assert isinstance(d, DnsDiscovery)
    assert d.host == service_host("llmkg-production", "llmkg-scalable-allocation-headless")
    assert d.host == "llmkg-scalable-allocation-headless.llmkg-production.svc"
    assert (d.port, d.interval) == (8081, 10.0)
    static = load_settings(
        environ={
            "LLMKG__SCALABILITY__DISTRIBUTION__DISCOVERY__TYPE": "static",
            "LLMKG__SCALABILITY__DISTRIBUTION__DISCOVERY__PEERS": '["127.0.0.1:18081"]',
        }
    ).scalability.distribution
    s = from_settings(static, lambda peers: None)
    assert isinstance(s, StaticDiscovery) and s.peers == ("127.0.0.1:18081",)
