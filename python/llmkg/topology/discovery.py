"""Peer discovery: the partition addresses ("host:port") of the other servers.

- ``type = "static"``: the list in ``discovery.peers``, as given; the zones and partitions
  of each peer are asked of the peer itself.
- ``type = "kubernetes"``: the DNS name of the headless Service,
  ``<service_name>.<namespace>.svc``, resolved with the system resolver
  (``socket.getaddrinfo``, so /etc/resolv.conf's search list and timeouts apply), again
  every ``refresh_interval`` on a background thread. A headless Service answers with one
  A/AAAA record per pod, and with ``publishNotReadyAddresses: false`` only the ready ones
  (k8s/overlays/production-partitioned). The port is ``discovery.port``: every pod listens
  on the same one, so SRV records would add nothing.

Whenever the list changes, ``on_change`` is called with the new list (sorted). A
resolution that fails, or answers with no address, keeps the last good list: a DNS
hiccup, or every pod unready for a moment, must not empty the router's peer list. The
failure is logged once, and the recovery once.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from llmkg.topology.server import parse_peer

if TYPE_CHECKING:
    from llmkg.config.schema import DistributionSettings

log = logging.getLogger("llmkg.topology.discovery")

OnChange = Callable[[tuple[str, ...]], None]
# (host, port) -> the peers' addresses; raises OSError when the name does not resolve.
Resolver = Callable[[str, int], Sequence[str]]
GetAddrInfo = Callable[..., list[tuple[Any, ...]]]


class Discovery(Protocol):
    """What the partition layer needs of a discovery: start it, read it, stop it."""

    @property
    def peers(self) -> tuple[str, ...]: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_addresses(
    host: str, port: int, getaddrinfo: GetAddrInfo = socket.getaddrinfo
) -> tuple[str, ...]:
    """Every address ``host`` resolves to (A and AAAA records), as ``ip:port``, sorted
    and without repeats; OSError (``socket.gaierror``) when it does not resolve."""
    infos = getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    found = set()
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            found.add(address(str(sockaddr[0]), port))
    return tuple(sorted(found))


def service_host(namespace: str, service_name: str) -> str:
    """The DNS name of a Service: relative to the cluster domain, which the pods' search
    list supplies (``svc.cluster.local`` by default, but clusters may rename it)."""
    return f"{service_name}.{namespace}.svc"


def _notify(on_change: OnChange, peers: tuple[str, ...]) -> None:
    try:
        on_change(peers)
    except Exception:  # the callback's failure must not stop the refreshes
        log.exception("peer discovery: the change callback failed")


class StaticDiscovery:
    """A fixed list of peers: ``on_change`` is called once, at :meth:`start`."""

    def __init__(self, peers: Sequence[str], on_change: OnChange) -> None:
        for peer in peers:
            parse_peer(peer)  # ValueError for a malformed one, before anything starts
        self._peers = tuple(sorted(set(peers)))
        self._on_change = on_change

    @property
    def peers(self) -> tuple[str, ...]:
        return self._peers

    def start(self) -> None:
        _notify(self._on_change, self._peers)

    def stop(self) -> None:
        pass


class DnsDiscovery:
    """The addresses of a DNS name, resolved every ``interval`` seconds.

    :meth:`poll` resolves when a refresh is due (by ``clock``) and says how long until
    the next one; :meth:`start` runs it on a daemon thread until :meth:`stop`. Tests drive
    :meth:`poll` with a fake clock and a fake ``resolve``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        interval: float,
        on_change: OnChange,
        resolve: Resolver = resolve_addresses,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be more than 0, not {interval}")
        self.host, self.port, self.interval = host, port, interval
        self._on_change = on_change
        self._resolve = resolve
        self._clock = clock
        self._peers: tuple[str, ...] = ()
        self._due: float | None = None  # None: at once
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def peers(self) -> tuple[str, ...]:
        """The last good list (empty until the name has resolved once)."""
        return self._peers

    @property
    def failing(self) -> bool:
        """Whether the last resolution failed (the list is then the one before)."""
        return self._failing

    def refresh(self) -> bool:
        """Resolve now; True when the list changed (and ``on_change`` was called)."""
        self._due = self._clock() + self.interval
        try:
            found = tuple(sorted(set(self._resolve(self.host, self.port))))
            if not found:
                raise OSError("no address")
        except OSError as e:
            if not self._failing:
                log.warning(
                    "peer discovery: %s does not resolve (%s); keeping the last %d peers",
                    self.host,
                    e,
                    len(self._peers),
                )
            self._failing = True
            return False
        if self._failing:
            log.info("peer discovery: %s resolves again (%d peers)", self.host, len(found))
            self._failing = False
        if found == self._peers:
            return False
        log.info("peer discovery: %s lists %d peers: %s", self.host, len(found), found)
        self._peers = found
        _notify(self._on_change, found)
        return True

    def poll(self) -> float:
        """Refresh if one is due; the seconds until the next is."""
        if self._due is None or self._clock() >= self._due:
            self.refresh()
        assert self._due is not None
        return max(0.0, self._due - self._clock())

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(
            target=self._run, name=f"llmkg-discovery-{self.host}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.poll()
            except Exception:  # a resolver bug must not end discovery for good
                log.exception("peer discovery: resolving %s failed", self.host)
                wait = self.interval
            self._stop.wait(wait)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (a resolution under way finishes first, up to ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def from_settings(
    dist: DistributionSettings,
    on_change: OnChange,
    resolve: Resolver = resolve_addresses,
    clock: Callable[[], float] = time.monotonic,
) -> StaticDiscovery | DnsDiscovery:
    """The discovery ``[scalability.distribution.discovery]`` describes (not started)."""
    d = dist.discovery
    if d.type == "static":
        return StaticDiscovery(d.peers, on_change)
    host = service_host(d.namespace, d.service_name)
    return DnsDiscovery(host, d.port, float(d.refresh_interval), on_change, resolve, clock)
