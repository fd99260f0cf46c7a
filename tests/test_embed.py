"""The fact embedder: deterministic, normalised, and facts that share words are close."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

import llmkg

# sha256 of the float32 little-endian bytes of embed_text("Paris capital_of France", dim=16).
# The Rust test `golden_vectors_are_pinned` pins the same vector by xxh3; this one checks
# that the bytes also arrive unchanged through the binding. A change means every stored
# embedding changed: that needs a re-embedding migration, not a new number here.
GOLDEN_SHA256 = "dd09dfd1df49946e88363330d11d695eb2b7585205bb989358c89159db797d30"


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_facts_sharing_words_are_closer() -> None:
    pho = llmkg.embed_fact("Pho", "is_a", "dog")
    rex = llmkg.embed_fact("Rex", "is_a", "dog")
    paris = llmkg.embed_fact("Paris", "capital_of", "France")
    assert cos(pho, rex) > cos(pho, paris) + 0.3, (cos(pho, rex), cos(pho, paris))


def test_shape_dtype_and_unit_norm() -> None:
    for dim in (1 << 4, 384, 768, 65_536):
        v = llmkg.embed_text("Straße in München, 東京タワー and more", dim=dim)
        assert v.shape == (dim,)
        assert v.dtype == np.float32
        assert v.flags.c_contiguous and v.flags.writeable
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    assert llmkg.embed_fact("a", "b", "c").shape == (768,)


def test_text_without_words_is_the_zero_vector() -> None:
    for text in ("", "   ", "?!-_ ,;"):
        v = llmkg.embed_text(text, dim=32)
        assert v.shape == (32,)
        assert not v.any()


def test_snake_case_and_case_are_word_separators() -> None:
    assert np.array_equal(llmkg.embed_text("Capital_Of"), llmkg.embed_text("capital of"))


def test_deterministic_across_calls() -> None:
    a = llmkg.embed_fact("Marie Curie", "won", "the Nobel Prize", dim=256)
    b = llmkg.embed_fact("Marie Curie", "won", "the Nobel Prize", dim=256)
    assert a.tobytes() == b.tobytes()


def test_golden_vector() -> None:
    v = llmkg.embed_text("Paris capital_of France", dim=16)
    digest = hashlib.sha256(v.astype("<f4").tobytes()).hexdigest()
    assert digest == GOLDEN_SHA256


def test_deterministic_across_processes() -> None:
    # A fresh interpreter with another hash seed: the embedding must not depend on any
    # per-process randomness (such as Python's or Rust's randomised hashers).
    code = (
        "import sys, llmkg; "
        "sys.stdout.write(llmkg.embed_fact('Pho', 'is_a', 'dog', dim=128).tobytes().hex())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    here = llmkg.embed_fact("Pho", "is_a", "dog", dim=128)
    assert bytes.fromhex(out) == here.tobytes()


def test_batch_equals_single() -> None:
    facts = [(f"subject {i}", "related_to", f"object number {i * 7}") for i in range(300)]
    facts.append(("", "", ""))
    # Past 1024 bytes a single embedding is computed detached from the interpreter (short
    # ones attached): both ways must give the batch's bits.
    facts.append(("word " * 300, "related_to", "a long object " * 10))
    batch = llmkg.embed_facts(facts, dim=64)
    assert batch.shape == (len(facts), 64)
    assert batch.dtype == np.float32
    for i, fact in enumerate(facts):
        assert batch[i].tobytes() == llmkg.embed_fact(*fact, dim=64).tobytes()

    texts = [" ".join(f) for f in facts]
    batch = llmkg.embed_texts(texts, dim=64)
    assert batch.shape == (len(texts), 64)
    for i, text in enumerate(texts):
        assert batch[i].tobytes() == llmkg.embed_text(text, dim=64).tobytes()


def test_batch_accepts_lists_iterables_and_empty() -> None:
    as_lists = llmkg.embed_facts([["Rex", "is_a", "dog"]])
    assert as_lists.tobytes() == llmkg.embed_facts([("Rex", "is_a", "dog")]).tobytes()
    gen = llmkg.embed_texts(t for t in ["a b", "c"])
    assert gen.shape == (2, 768)
    assert llmkg.embed_texts([], dim=8).shape == (0, 8)
    assert llmkg.embed_facts([], dim=8).shape == (0, 8)


@pytest.mark.parametrize("dim", [0, -1, 65_537, 2**40])
def test_bad_dim_is_a_value_error(dim: int) -> None:
    for call in (
        lambda: llmkg.embed_text("x", dim=dim),
        lambda: llmkg.embed_fact("x", "y", "z", dim=dim),
        lambda: llmkg.embed_texts(["x"], dim=dim),
        lambda: llmkg.embed_facts([("x", "y", "z")], dim=dim),
    ):
        with pytest.raises(ValueError, match="dim"):
            call()


def test_bad_inputs_are_type_errors_naming_the_argument() -> None:
    with pytest.raises(TypeError):
        llmkg.embed_text(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        llmkg.embed_fact("a", "b", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dim"):
        llmkg.embed_text("x", dim=7.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="single str"):
        llmkg.embed_texts("not a list")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        llmkg.embed_texts(["ok", 5])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"facts\[1\]"):
        llmkg.embed_facts([("a", "b", "c"), ("only", "two")])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"facts\[0\]"):
        llmkg.embed_facts(["a b c"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"facts\[0\]"):
        llmkg.embed_facts([("a", "b", 3)])  # type: ignore[list-item]
