"""``llmkg.AsyncClient`` against a real server: each method, the async iterators walking
their pages, the errors as in the blocking client, and calls from many tasks at once on
one client. (Retries and streams: test_client_retry.py; TLS and tokens:
test_client_security.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from serverlib import Server, fact, free_port

import llmkg
from llmkg.client import ApiConnectionError, Entity, NotFoundError, ValidationError
from llmkg.engine import AllocationResult, Node

OPEN = {
    "LLMKG__SECURITY__AUTHENTICATION__TYPE": "none",
    "LLMKG__SECURITY__RATE_LIMIT__ENABLED": "false",
    "LLMKG__ALLOCATION__SIMILARITY_THRESHOLD": "-1.0",  # every node but the first has a parent
}
FACTS = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("async"), env=OPEN) as s:
        yield s


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


pytestmark = pytest.mark.anyio


async def test_writes_and_point_reads(server: Server) -> None:
    async with llmkg.AsyncClient(server.url) as c:
        results = await c.allocate_many([fact(i) for i in range(FACTS)])  # type: ignore[misc]
        assert [r.created for r in results] == [True] * FACTS
        one = await c.allocate(fact(100, subject="Pho"))  # type: ignore[arg-type]
        assert isinstance(one, AllocationResult) and one.parent is not None
        node = await c.get(one.node_id)
        assert isinstance(node, Node) and node.subject == "Pho"
        assert node.parent == one.parent.node_id
        assert await c.delete(one.node_id) is True
        assert await c.get(one.node_id) is None and await c.delete(one.node_id) is False


async def test_search(server: Server) -> None:
    async with llmkg.AsyncClient(server.url) as c:
        await c.allocate(fact(5))  # type: ignore[arg-type]
        hits = await c.search(embedding=np.asarray(fact(5)["embedding"]), k=2)
        assert hits[0].node.subject == "s5"
        filtered = await c.search(text="s5", k=20, filter={"subject": "s5"})
        assert [h.node.subject for h in filtered] == ["s5"]


async def test_graph_reads_and_async_iterators(server: Server) -> None:
    async with llmkg.AsyncClient(server.url) as c:
        await c.allocate_many([fact(i) for i in range(FACTS)])  # type: ignore[misc]
        nodes = [n async for n in c.iter_facts(predicate="p", page_size=3)]
        page, after = await c.facts_matching(predicate="p", limit=3)
        assert nodes[:3] == page and after is not None and len(nodes) >= FACTS
        names = [n async for n in c.iter_entities(prefix="s1", page_size=2)]
        first, _ = await c.entities(prefix="s1", limit=2)
        assert names[:2] == first and "s10" in names and "s11" in names
        entity = await c.entity("s1")
        assert isinstance(entity, Entity) and entity.predicates == {"p": 1}
        assert await c.entity("nobody") is None
        child = next(n for n in nodes if n.parent is not None)
        assert child.parent is not None
        kids = [n async for n in c.iter_children(child.parent, page_size=1)]
        children = await c.children(child.parent)
        assert children is not None and kids == children[0] and child in kids
        chain = await c.ancestors(child.node_id)
        assert chain is not None and chain[0].node_id == child.parent
        assert await c.children(2**40) is None and await c.ancestors(2**40) is None
        with pytest.raises(NotFoundError):
            [n async for n in c.iter_children(2**40)]


async def test_probes_and_administration(server: Server) -> None:
    async with llmkg.AsyncClient(server.url) as c:
        assert (await c.live()).ok and (await c.ready()).status == "ready"
        assert await c.stats()
        assert isinstance(await c.checkpoint(), int)
        backup = await c.backup()
        assert Path(backup.path).is_dir()


async def test_errors(server: Server) -> None:
    async with llmkg.AsyncClient(server.url) as c:
        with pytest.raises(ValidationError) as raised:
            await c.allocate({**fact(1), "confidence": 2.0})  # type: ignore[typeddict-item]
        assert raised.value.field == "fact.confidence"
    async with llmkg.AsyncClient(f"http://127.0.0.1:{free_port()}", timeout=5) as c:
        with pytest.raises(ApiConnectionError):
            await c.get(1)


async def test_many_tasks_share_one_client(server: Server) -> None:
    found: list[int] = []
    async with llmkg.AsyncClient(server.url) as c:

        async def allocate(i: int) -> None:
            found.append((await c.allocate(fact(1000 + i))).node_id)  # type: ignore[arg-type]

        async with anyio.create_task_group() as tasks:
            for i in range(20):
                tasks.start_soon(allocate, i)
    assert len(set(found)) == 20
