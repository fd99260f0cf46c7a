"""Storage failures, told apart in one place for everything that answers them: the
server's error responses and the engine's checkpoint back-off.

- ``"full"``: the disk (or the quota) of the data directory is full: SQLite's
  ``SQLITE_FULL`` ("database or disk is full"), or ENOSPC/EDQUOT from a file write (an
  index snapshot). Writes fail until space is freed; reads still work.
- ``"unavailable"``: any other failure of the storage itself (I/O error, read-only file
  system, the database locked past the store's timeout): worth retrying later.
- ``None``: not a storage failure (a bug, a bad argument): not for these answers.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Literal

from llmkg.store.errors import StoreError

Failure = Literal["full", "unavailable"]

# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_FULL = 13
_SQLITE_UNAVAILABLE = {
    5,  # SQLITE_BUSY: locked past the connection's timeout
    8,  # SQLITE_READONLY
    10,  # SQLITE_IOERR
    14,  # SQLITE_CANTOPEN
    15,  # SQLITE_PROTOCOL
}
# Before Python 3.11 an sqlite3 error carries no code: its message tells.
_SQLITE_MESSAGES: dict[str, Failure] = {
    "database or disk is full": "full",
    "disk i/o error": "unavailable",
    "attempt to write a readonly database": "unavailable",
    "unable to open database file": "unavailable",
    "database is locked": "unavailable",
}
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_UNAVAILABLE_ERRNOS = {errno.EIO, errno.EROFS, errno.ENXIO, errno.ENODEV, errno.ESTALE}


def storage_failure(exc: BaseException) -> Failure | None:
    """What kind of storage failure ``exc`` is, if it is one. The store's own errors (a
    commit that failed, a closed store, a write past its deadline) always are: full when
    what failed under them was a full disk."""
    if isinstance(exc, StoreError):
        cause = exc.__cause__
        return (storage_failure(cause) if cause is not None else None) or "unavailable"
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            primary = code & 0xFF
            if primary == _SQLITE_FULL:
                return "full"
            return "unavailable" if primary in _SQLITE_UNAVAILABLE else None
        message = str(exc).lower()
        return next((kind for text, kind in _SQLITE_MESSAGES.items() if text in message), None)
    if isinstance(exc, OSError):
        if exc.errno in _FULL_ERRNOS:
            return "full"
        if exc.errno in _UNAVAILABLE_ERRNOS:
            return "unavailable"
    return None
