"""The store: the source of truth for facts, their full vectors and parent links.

Every write carries a sequence number, so that an index snapshot tagged with a sequence
can be brought up to date by replaying the changes after it. SQLite (WAL mode, through
the standard library) is the embedded default.
"""

from llmkg.store.errors import StoreClosedError, StoreError, StoreTimeoutError
from llmkg.store.records import Change, NodeRecord
from llmkg.store.schema import StoreCorruptError, StoreOpenError, StoreVersionError
from llmkg.store.sqlite import SqliteStore

__all__ = [
    "Change",
    "NodeRecord",
    "SqliteStore",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreError",
    "StoreOpenError",
    "StoreTimeoutError",
    "StoreVersionError",
]
