"""The store: the source of truth for facts, their full vectors and parent links.

Every write carries a sequence number, so that an index snapshot tagged with a sequence
can be brought up to date by replaying the changes after it. SQLite (WAL mode, through
the standard library) is the embedded default; PostgreSQL (``llmkg.store.postgres``,
imported only when used) is the store that several processes share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkg.store.base import BackupUnsupportedError, Store
from llmkg.store.errors import (
    StoreClosedError,
    StoreError,
    StoreTimeoutError,
    StoreUnavailableError,
)
from llmkg.store.records import Change, NodeRecord
from llmkg.store.schema import (
    StoreCorruptError,
    StoreOpenError,
    StoreOutdatedError,
    StorePartitionsError,
    StoreVersionError,
)
from llmkg.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from llmkg.engine.config import EngineConfig

__all__ = [
    "BackupUnsupportedError",
    "Change",
    "NodeRecord",
    "SqliteStore",
    "Store",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreError",
    "StoreOpenError",
    "StoreOutdatedError",
    "StorePartitionsError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "StoreVersionError",
    "open_store",
]


def open_store(config: EngineConfig) -> Store:
    """The store ``config.store_backend`` names, opened with the config's settings (an
    older format or schema is upgraded only with ``config.auto_migrate``)."""
    if config.store_backend == "postgresql":
        from llmkg.store.postgres import PostgresStore

        return PostgresStore(
            config.postgres_dsn,
            partition=config.partition,
            partition_count=config.partition_count,
            pool_size=config.postgres_pool_size,
            connect_timeout=config.postgres_connect_timeout,
            statement_timeout=config.postgres_statement_timeout,
            migrate=config.auto_migrate,
        )
    return SqliteStore(
        config.data_directory,
        durability=config.durability,
        sync_interval=config.sync_interval,
        write_timeout=config.write_timeout,
        migrate=config.auto_migrate,
    )
