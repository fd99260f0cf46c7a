"""Where a fact lives in a database split into partitions: its *home partition*, a hash
of its canonical triple modulo the partition count. Stable across processes, machines and
versions (SHA-256, not Python's salted ``hash``), so that every server sends the same
fact to the same partition, where its triple is unique."""

from __future__ import annotations

import hashlib


def triple_key(subject: str, predicate: str, object: str) -> bytes:
    """SHA-256 of the triple, each part prefixed by its length so that no two triples
    share an encoding."""
    h = hashlib.sha256()
    for part in (subject, predicate, object):
        data = part.encode()
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.digest()


def home_partition(subject: str, predicate: str, object: str, partition_count: int) -> int:
    """The partition of a (canonical) triple among ``partition_count``: the first 8 bytes
    of its key, big-endian, modulo the count."""
    if partition_count < 1:
        raise ValueError("partition_count must be at least 1")
    key = triple_key(subject, predicate, object)
    return int.from_bytes(key[:8], "big") % partition_count
