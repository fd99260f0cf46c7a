"""Index files written by earlier builds read back the same index: the in-memory layout
may change (q8 codes moved beside the level-0 links), the file format does not. The
fixture (tests/fixtures/hnsw-format1, made by make_hnsw_fixture.py with the build before
that change) holds q8 codes whose rows are not their slots, free rows and slots, every
precision and tombstones, with the answers that build gave."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmkg import HnswIndex

FIXTURE = Path(__file__).parent / "fixtures" / "hnsw-format1"


@pytest.fixture(scope="module")
def answers() -> dict[str, Any]:
    return json.loads((FIXTURE / "answers.json").read_text())


def test_an_index_written_before_the_block_layout_answers_as_it_did(
    answers: dict[str, Any],
) -> None:
    index = HnswIndex.load(FIXTURE / "index.llmkg")
    queries = np.array(answers["queries"], dtype=np.float32)
    want = answers["rescore=True"]
    ids, scores = index.search(queries, k=5, ef=40)
    assert ids.tolist() == want["ids"]
    np.testing.assert_allclose(scores, np.array(want["scores"]), rtol=0, atol=1e-6)


def test_its_q8_codes_come_back_to_their_own_nodes(answers: dict[str, Any]) -> None:
    """Without rescoring, a q8 node's score is its code's: the same as that build gave
    only if every code came back to its own node. (The other nodes are now traversed on
    q8 copies of their vectors, which that build did not have, so their scores and a few
    places of the lists differ.)"""
    index = HnswIndex.load(FIXTURE / "index.llmkg")
    queries = np.array(answers["queries"], dtype=np.float32)
    old = answers["rescore=False"]
    ids, scores = index.search(queries, k=5, ef=40, rescore=False)
    found = missed = 0
    for q, (new_ids, new_scores) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True)):
        now = dict(zip(new_ids, new_scores, strict=True))
        for node, score in zip(old["ids"][q], old["scores"][q], strict=True):
            if answers["precisions"][str(node)] != "q8":
                continue
            if node not in now:
                missed += 1
                continue
            found += 1
            assert now[node] == pytest.approx(score, abs=1e-6), f"query {q}, node {node}"
    assert found >= 9 * missed and found >= 40, f"{found} q8 answers found again, {missed} not"


def test_it_keeps_its_precisions_and_writes_itself_back_the_same(
    answers: dict[str, Any],
    tmp_path: Path,
) -> None:
    index = HnswIndex.load(FIXTURE / "index.llmkg")
    live = sorted(int(i) for i in index.ids())
    assert {str(i): p for i, p in zip(live, index.precisions_of(live), strict=True)} == (
        answers["precisions"]
    )
    again = HnswIndex.from_bytes(index.to_bytes())
    assert again.to_bytes() == index.to_bytes()
    queries = np.array(answers["queries"], dtype=np.float32)
    for rescore in (True, False):
        first = index.search(queries, k=5, ef=40, rescore=rescore)
        second = again.search(queries, k=5, ef=40, rescore=rescore)
        assert first[0].tolist() == second[0].tolist()
        assert first[1].tolist() == second[1].tolist()
