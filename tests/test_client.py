"""``llmkg.Client`` against a real server: every route through its method, answers as the
engine's types and checked against what the server holds, the paged listings walked by
the iterators, the server's errors as the client's classes with their fields, and 429s
of a real rate limit retried as ``Retry-After`` says (an injected sleep records the waits
and moves an injected clock: no test waits for them). Retries and streams against
scripted answers: test_client_retry.py; TLS and tokens: test_client_security.py."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serverlib import REPO, Server, fact, free_port

import llmkg
from llmkg.client import (
    ApiConnectionError,
    ApiError,
    Backup,
    Entity,
    Health,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ValidationError,
    calls,
)
from llmkg.engine import AllocationResult, Fact, Node, SearchHit

OPEN = {
    "LLMKG__SECURITY__AUTHENTICATION__TYPE": "none",
    "LLMKG__SECURITY__RATE_LIMIT__ENABLED": "false",
    "LLMKG__ALLOCATION__SIMILARITY_THRESHOLD": "-1.0",  # every node but the first has a parent
}
FACTS = 24  # s0..s23, each its own embedding


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("client"), env=OPEN) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[llmkg.Client]:
    with llmkg.Client(server.url) as c:
        facts = [{**fact(i), "object": "o/slash" if i % 3 == 0 else f"o{i}"} for i in range(FACTS)]
        c.allocate_many(facts)  # type: ignore[arg-type]
        yield c


def all_nodes(client: llmkg.Client) -> list[Node]:
    return list(client.iter_facts(page_size=1000))


# ---- writes and point reads ----------------------------------------------------------------


def test_allocate_reads_like_the_engine(client: llmkg.Client) -> None:
    given = fact(100, subject="Pho", predicate="is_a", object="dog", confidence=0.7)
    first = client.allocate(given)  # type: ignore[arg-type]
    assert isinstance(first, AllocationResult) and first.created
    assert first.confidence == pytest.approx(0.7) and first.strategy in ("direct", "hierarchical")
    # The same triple keeps its node: the reason allocations may be retried.
    again = client.allocate({**given, "confidence": 0.9})  # type: ignore[typeddict-item]
    assert (again.node_id, again.created) == (first.node_id, False)
    node = client.get(first.node_id)
    assert isinstance(node, Node)
    assert (node.subject, node.predicate, node.object) == ("Pho", "is_a", "dog")
    assert node.confidence == pytest.approx(0.9)
    assert node.parent == (first.parent.node_id if first.parent else None)


def test_allocate_many_takes_arrays_and_engine_facts(client: llmkg.Client) -> None:
    vector = np.asarray(fact(201)["embedding"], dtype=np.float32)
    results = client.allocate_many(
        [
            {"subject": "a200", "predicate": "p", "object": "b", "confidence": 0.5},
            {
                "subject": "a201",
                "predicate": "p",
                "object": "b",
                "confidence": 0.5,
                "embedding": vector,
            },
            Fact("a202", "p", "b", 0.5, np.asarray(fact(202)["embedding"])),
        ]
    )
    assert [r.created for r in results] == [True, True, True]
    subjects = [n.subject for n in (client.get(r.node_id) for r in results) if n]
    assert subjects == ["a200", "a201", "a202"]


def test_get_and_delete_answer_none_and_false_for_no_node(client: llmkg.Client) -> None:
    made = client.allocate(fact(300))  # type: ignore[arg-type]
    assert client.delete(made.node_id) is True
    assert client.get(made.node_id) is None
    assert client.delete(made.node_id) is False  # a 404 naming node_id, as the engine's False


def test_a_404_without_a_field_stays_an_error(client: llmkg.Client) -> None:
    # No such route: not "no such node", which would hide a wrong URL or an old server.
    call = dataclasses.replace(calls.get(1), path="/api/v1/no-such-route/1")
    with pytest.raises(NotFoundError) as raised:
        client._send(call)
    assert raised.value.field is None and raised.value.status == 404


# ---- search --------------------------------------------------------------------------------


def test_search_by_embedding_finds_the_fact(client: llmkg.Client) -> None:
    hits = client.search(embedding=np.asarray(fact(5)["embedding"]), k=3)
    assert all(isinstance(h, SearchHit) for h in hits) and len(hits) == 3
    assert hits[0].node.subject == "s5" and hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert hits[0].node_id == hits[0].node.node_id
    assert hits[0].score >= hits[1].score >= hits[2].score
    # A hit's node is the node, its parent too (every node but the first has one here).
    assert [client.get(h.node_id) for h in hits] == [h.node for h in hits]
    assert any(h.node.parent is not None for h in hits)


def test_search_by_text_with_a_filter(client: llmkg.Client) -> None:
    hits = client.search(text="s7 p o7", k=50, filter={"object": "o/slash"})
    assert hits and {h.node.object for h in hits} == {"o/slash"}
    hits = client.search(text="anything", k=50, filter={"subject": "s7", "min_confidence": 0.4})
    assert [h.node.subject for h in hits] == ["s7"]
    assert client.search(text="s7", filter={"min_confidence": 0.99}) == []


# ---- the graph: patterns, entities, hierarchy ----------------------------------------------


def test_facts_matching_pages_and_iter_facts_walks_them(client: llmkg.Client) -> None:
    nodes, after = client.facts_matching(predicate="p", limit=5)
    assert len(nodes) == 5 and after is not None
    more, _ = client.facts_matching(predicate="p", limit=5, after=after)
    assert more[0].node_id > nodes[-1].node_id
    walked = list(client.iter_facts(predicate="p", page_size=5))
    expected = [n for n in all_nodes(client) if n.predicate == "p"]
    assert walked == expected and len(walked) > 5 * 3
    assert [n.node_id for n in walked] == sorted(n.node_id for n in walked)
    slashes = list(client.iter_facts(object="o/slash", min_confidence=0.5, page_size=2))
    assert [n.subject for n in slashes] == [f"s{i}" for i in range(0, FACTS, 3)]


def test_entity_has_both_roles_and_a_name_with_a_slash(client: llmkg.Client) -> None:
    found = client.entity("o/slash", limit=3)
    assert isinstance(found, Entity) and found.name == "o/slash"
    assert found.as_subject == [] and found.as_subject_next is None
    assert [n.subject for n in found.as_object] == ["s0", "s3", "s6"]
    assert found.predicates == {"p": FACTS // 3}
    rest = client.entity("o/slash", limit=3, object_after=found.as_object_next)
    assert rest is not None and [n.subject for n in rest.as_object] == ["s9", "s12", "s15"]
    assert client.entity("nobody at all") is None


def test_entities_pages_and_iter_entities(client: llmkg.Client) -> None:
    names, after = client.entities(prefix="s1", limit=3)
    assert names == ["s1", "s10", "s11"] and after is not None
    walked = list(client.iter_entities(prefix="s1", page_size=3))
    assert walked == ["s1", *sorted(f"s{i}" for i in range(10, 20))]
    assert list(client.iter_entities(prefix="zz")) == []


def test_children_and_ancestors_agree_with_the_parents(client: llmkg.Client) -> None:
    nodes = all_nodes(client)
    by_parent: dict[int, list[Node]] = {}
    for n in nodes:
        if n.parent is not None:
            by_parent.setdefault(n.parent, []).append(n)
    assert by_parent, "some allocation got a parent"
    parent = max(by_parent, key=lambda p: len(by_parent[p]))
    page, _ = client.children(parent, limit=1000) or ([], None)
    assert page == by_parent[parent]
    assert list(client.iter_children(parent, page_size=1)) == by_parent[parent]
    child = by_parent[parent][0]
    chain = client.ancestors(child.node_id)
    assert chain is not None and chain[0].node_id == parent
    assert client.ancestors(child.node_id, max_depth=1) == chain[:1]


def test_children_and_ancestors_of_no_node(client: llmkg.Client) -> None:
    missing = 2**40
    assert client.children(missing) is None and client.ancestors(missing) is None
    with pytest.raises(NotFoundError) as raised:
        list(client.iter_children(missing))  # an iterator does not pass a gone node as empty
    assert raised.value.field == "node_id"


# ---- probes and administration -------------------------------------------------------------


def test_probes_stats_checkpoint_and_backup(client: llmkg.Client) -> None:
    live, ready = client.live(), client.ready()
    assert isinstance(live, Health) and live.ok and live.status == "ok"
    assert ready.ok and ready.status == "ready" and ready.checks["store"].ok
    stats = client.stats()
    assert isinstance(stats, dict) and stats
    assert isinstance(client.checkpoint(), int)
    backup = client.backup()
    assert isinstance(backup, Backup) and backup.nodes >= FACTS and Path(backup.path).is_dir()


# ---- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("send", "field"),
    [
        (lambda c: c.allocate({**fact(1), "confidence": 1.5}), "fact.confidence"),
        (lambda c: c.allocate({**fact(1), "colour": "red"}), "fact.colour"),
        (lambda c: c.allocate_many([fact(1), {**fact(2), "subject": 3}]), "facts[1].subject"),
        (lambda c: c.allocate_many([]), "facts"),
        (lambda c: c.search(text="x", k=0), "query.k"),
        (lambda c: c.search(embedding=[0.1, 0.2]), "query.embedding"),
        (lambda c: c.get(0), "node_id"),
        (lambda c: c.facts_matching(limit=1001), "limit"),
        (lambda c: c.facts_matching(min_confidence=float("nan")), "min_confidence"),
        (lambda c: c.entities(after="not-a-cursor!"), "cursor"),
        (lambda c: c.ancestors(1, max_depth=0), "max_depth"),
    ],
)
def test_bad_input_is_a_validation_error_naming_the_field(
    client: llmkg.Client, send: object, field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        send(client)  # type: ignore[operator]
    error = raised.value
    assert (error.status, error.code, error.field) == (422, "invalid_field", field)
    assert error.message and error.request_id
    assert isinstance(error, llmkg.ApiError) and field in str(error)


def test_no_server_is_a_connection_error() -> None:
    with llmkg.Client(f"http://127.0.0.1:{free_port()}", timeout=5) as c:
        with pytest.raises(ApiConnectionError) as raised:
            c.get(1)
    assert raised.value.status is None and "127.0.0.1" in str(raised.value)


def test_importing_llmkg_imports_no_http_client() -> None:
    code = (
        "import sys, llmkg\n"
        "assert 'httpx' not in sys.modules and 'llmkg.client' not in sys.modules\n"
        "assert llmkg.Client.__module__ == 'llmkg.client.sync'\n"
        "assert 'httpx' in sys.modules\n"
        "assert llmkg.ApiError is llmkg.client.ApiError and llmkg.AsyncClient\n"
    )
    env = {"PYTHONPATH": str(REPO / "python")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# ---- a real rate limit ---------------------------------------------------------------------

# 0.2 requests a second, one at once: a refused request is told Retry-After: 5, and the
# bucket stays empty for the milliseconds the retries take (their waits are not slept).
LIMITED = {
    "LLMKG__SECURITY__AUTHENTICATION__TYPE": "none",
    "LLMKG__SECURITY__RATE_LIMIT__ENABLED": "true",
    "LLMKG__SECURITY__RATE_LIMIT__REQUESTS_PER_SECOND": "0.2",
    "LLMKG__SECURITY__RATE_LIMIT__BURST": "1",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("limited"), env=LIMITED) as s:
        yield s


class FakeTime:
    """A monotonic clock that only the client's sleeps move; the waits, recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def drained(server: Server) -> None:
    """Take the bucket's token, if it has one, so that the next request gets 429."""
    with llmkg.Client(server.url, retry=RetryPolicy(max_retries=0)) as c:
        for _ in range(3):
            try:
                c.get(1)
            except RateLimitedError:
                return
    raise AssertionError("the rate limit never refused")


def test_429_is_retried_as_retry_after_says(limited: Server) -> None:
    time = FakeTime()
    drained(limited)
    with llmkg.Client(limited.url, clock=time.clock, sleep=time.sleep) as c:
        with pytest.raises(RateLimitedError) as raised:
            c.search(text="x")
    # Three retries (the default), each at least the server's Retry-After.
    assert time.waits == [5.0, 5.0, 5.0]
    assert raised.value.retry_after == 5.0 and raised.value.code == "rate_limited"


def test_retries_stop_at_the_calls_timeout(limited: Server) -> None:
    time = FakeTime()
    drained(limited)
    with llmkg.Client(limited.url, timeout=12, clock=time.clock, sleep=time.sleep) as c:
        with pytest.raises(RateLimitedError):
            c.allocate(fact(1))  # type: ignore[arg-type]
    assert time.waits == [5.0, 5.0]  # a third wait would end past the 12 s


def test_a_delete_is_not_retried(limited: Server) -> None:
    time = FakeTime()
    drained(limited)
    with llmkg.Client(limited.url, clock=time.clock, sleep=time.sleep) as c:
        with pytest.raises(RateLimitedError):
            c.delete(1)
    assert time.waits == []


def test_every_error_is_an_api_error() -> None:
    from llmkg.client import errors

    for name in errors.__dict__:
        kind = getattr(errors, name)
        if isinstance(kind, type) and issubclass(kind, Exception):
            assert issubclass(kind, ApiError), name
