"""What a store write raises when the store, not the operation, is at fault: the server
answers these with 503 ``store_unavailable`` and ``Retry-After``."""

from __future__ import annotations

import sqlite3


class StoreError(RuntimeError):
    """The store cannot take writes now (its commit failed, its writer is down): nothing of
    the write was acknowledged; retrying later is safe."""


class StoreClosedError(StoreError):
    """The store was closed; no more writes are accepted."""


class StoreUnavailableError(StoreError):
    """The database behind the store cannot be reached (or stopped answering) within the
    configured timeouts. The message names the server, never the password."""


class StoreTimeoutError(StoreError, TimeoutError):
    """A write waited longer than ``write_timeout`` for its commit."""


def is_fault(e: BaseException) -> bool:
    """An error of the database itself (I/O, full disk, corrupt file, lost connection), as
    opposed to one of the operation (a constraint, a merge rule that raised)."""
    return isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.IntegrityError)
