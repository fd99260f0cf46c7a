"""A fact's home partition: the same on every machine and run, spread evenly, and the
only function that places facts."""

from __future__ import annotations

from collections import Counter

import pytest

from llmkg.store.placement import home_partition, triple_key

GOLDEN_PHO, GOLDEN_MIA, GOLDEN_KEY = 7, 3, "775e0cd7fcad9d17"


def test_the_home_partition_is_fixed_forever() -> None:
    # Written down once: a change would move every stored fact to another partition.
    pho = home_partition("Pho", "is_a", "dog", 8)
    mia = home_partition("Mia", "likes", "Pho", 8)
    assert (pho, mia) == (GOLDEN_PHO, GOLDEN_MIA)
    assert triple_key("Pho", "is_a", "dog").hex()[:16] == GOLDEN_KEY


def test_facts_spread_evenly_over_the_partitions() -> None:
    counts = Counter(home_partition(f"s{i}", "p", f"o{i}", 8) for i in range(8000))
    assert sorted(counts) == list(range(8))
    assert max(counts.values()) < 1.15 * min(counts.values())


def test_one_partition_holds_everything_and_a_count_below_one_is_refused() -> None:
    assert {home_partition(f"s{i}", "p", "o", 1) for i in range(50)} == {0}
    with pytest.raises(ValueError, match="at least 1"):
        home_partition("s", "p", "o", 0)
