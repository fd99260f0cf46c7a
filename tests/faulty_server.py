"""llmkg-server with faults switched on and off by files in the directory named by
``LLMKG_TEST_FAULTS``, for tests over real processes:

- ``commit``: every statement of the store's writer but reads raises ``disk I/O error``
  (its commits fail, and so do its probes: the store is failed until the file goes);
- ``hold``: every statement of the store's writer waits while the file exists, and
  ``held`` is created once one waits (a request is then in flight, held in its commit);
- ``link``: every link into the index raises.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from llmkg._core import Linker
from llmkg.engine import engine
from llmkg.server.cli import main
from llmkg.store import sqlite

FAULTS = Path(os.environ["LLMKG_TEST_FAULTS"])


class FaultyConnection:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _check(self, sql: str) -> None:
        if (FAULTS / "hold").exists():
            (FAULTS / "held").touch()
            while (FAULTS / "hold").exists():
                time.sleep(0.005)
        if (FAULTS / "commit").exists() and not sql.lstrip().upper().startswith("SELECT"):
            raise sqlite3.OperationalError("disk I/O error")

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def faulty_link(ids: list[int]) -> None:
    """The linker's ``before_link`` hook: the link fails while the file exists."""
    if (FAULTS / "link").exists():
        raise OSError("link refused")


def install() -> None:
    writer_connection = sqlite.SqliteStore._writer_connection

    def faulty_writer(self: sqlite.SqliteStore) -> sqlite3.Connection:
        return FaultyConnection(writer_connection(self))  # type: ignore[return-value]

    def faulty_linker(index: Any, **kw: Any) -> Linker:
        return Linker(index, before_link=faulty_link, **kw)

    sqlite.SqliteStore._writer_connection = faulty_writer  # type: ignore[method-assign]
    engine.Linker = faulty_linker  # type: ignore[assignment,misc]


if __name__ == "__main__":
    install()
    sys.exit(main())
