"""The data commands of ``llmkg-server``: ``export FILE`` and ``import FILE`` (offline, on
the configured store), and how the long commands (these, backup, restore) show their
progress: a bar when standard error is a terminal, else a log line on standard error
every ``--progress-interval`` seconds with the count and the rate."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmkg.config import ConfigError, Settings, engine_config
from llmkg.progress import Progress, ProgressFactory

if TYPE_CHECKING:
    from llmkg.engine.config import EngineConfig
    from llmkg.store import Store

log = logging.getLogger("llmkg.cli")
EXIT_CONFIG = 2


def add_progress_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--progress-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="without a terminal, log the progress every SECONDS (default 5; 0: every step)",
    )


def add_commands(sub: Any) -> None:
    e = sub.add_parser(
        "export",
        help="write every live fact of the configured store as NDJSON (offline)",
    )
    e.add_argument("file", metavar="FILE", help="the file to write ('-': standard output)")
    e.add_argument(
        "--embedding", action="store_true", help="each fact's stored vector too (larger)"
    )
    add_progress_option(e)
    i = sub.add_parser(
        "import",
        help="place the facts of an export in the configured store, with their parents (offline)",
    )
    i.add_argument("file", metavar="FILE", help="an export ('-': standard input)")
    i.add_argument(
        "--merge",
        action="store_true",
        help="into a store that holds facts: stored triples are kept, with the larger confidence",
    )
    add_progress_option(i)


def progress_to_stderr(args: argparse.Namespace) -> ProgressFactory:
    """Reporters for a command run by hand or by a script: a bar on a terminal, else log
    lines on standard error (``setup_logging``)."""
    every = max(0.0, getattr(args, "progress_interval", 5.0))

    def make(what: str, total: int | None, unit: str) -> Progress:
        return Progress(log, what, every=every, total=total, unit=unit, stream=sys.stderr)

    return make


def setup_logging() -> None:
    """Standard error gets the commands' progress (``llmkg.cli``) and every warning; not the
    engine's routine lines (its start, its checkpoints). Standard output stays the
    command's answer (or the export itself)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    log.setLevel(logging.INFO)


class _RefusedError(Exception):
    """The store cannot be used; the message is printed already, ``code`` is the exit."""

    def __init__(self, code: int) -> None:
        self.code = code


@contextmanager
def _offline_store(config: EngineConfig, command: str) -> Iterator[Store]:
    """The configured store, opened by this command alone: for SQLite, with the data
    directory's lock (a server running on it refuses the command: the store has one
    writer), and only if a store is there (not a new empty one in a mistyped directory)
    unless the command is an import."""
    from llmkg.engine import DataDirectoryInUseError
    from llmkg.engine.exclusion import lock_directory
    from llmkg.store import StoreError, StoreOpenError, open_store
    from llmkg.store.sqlite import DB_FILE

    lock = None
    if config.store_backend == "sqlite":
        if command != "import" and not (config.data_directory / DB_FILE).is_file():
            raise _RefusedError(
                _fail(command, f"no store in {config.data_directory} (storage.data_directory)")
            )
        config.data_directory.mkdir(parents=True, exist_ok=True)
        try:
            lock = lock_directory(config.data_directory)
        except DataDirectoryInUseError:
            through = " (GET /api/v1/export)" if command == "export" else ""
            raise _RefusedError(
                _fail(
                    command,
                    f"{config.data_directory} is in use by a running server: stop it"
                    + (f", or export through it{through}" if through else " first"),
                )
            ) from None
    try:
        try:
            store = open_store(config)
        except StoreOpenError as e:
            raise _RefusedError(
                _fail(command, f"cannot open the store: {e}", EXIT_CONFIG)
            ) from None
        except StoreError as e:
            raise _RefusedError(_fail(command, f"cannot open the store: {e}")) from None
        try:
            yield store
        finally:
            store.close()
    finally:
        if lock is not None:
            os.close(lock)


def _fail(command: str, message: str, code: int = 1) -> int:
    print(f"llmkg-server {command}: {message}", file=sys.stderr)
    return code


def _answer(summary: dict[str, Any], to_stderr: bool) -> None:
    """The command's summary: on standard output, unless the data went there."""
    print(json.dumps(summary), file=sys.stderr if to_stderr else sys.stdout)


def export_command(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 once the file is complete (written to a temporary name, renamed at the end);
    1 if the store cannot be read or is in use by a server; 2 for a bad config or a store
    that cannot be opened."""
    from llmkg.store import StoreError

    started = time.monotonic()
    try:
        config = engine_config(settings)
    except ConfigError as e:
        return _fail("export", f"bad config: {e}", EXIT_CONFIG)
    try:
        with _offline_store(config, "export") as store:
            count = _export_to(args.file, store, args.embedding, progress_to_stderr(args))
    except _RefusedError as e:
        return e.code
    except (StoreError, OSError) as e:
        outcome = "the output is cut off" if args.file == "-" else "no file was written"
        return _fail("export", f"failed, and {outcome}: {e}")
    summary = {"facts": count, "file": args.file, "seconds": round(time.monotonic() - started, 3)}
    _answer(summary, to_stderr=args.file == "-")
    return 0


def _export_to(path: str, store: Store, embeddings: bool, progress: ProgressFactory) -> int:
    from llmkg.engine.exchange import export

    if path == "-":
        count = export(store, sys.stdout.buffer, embeddings, progress)
        sys.stdout.buffer.flush()
        return count
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as out:
            count = export(store, out, embeddings, progress)
            out.flush()
            os.fsync(out.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file, not mkstemp's 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def import_command(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 once every line is placed (and, for an SQLite store, the index is built with
    them, so that the server starts at once); 1 for a bad line (nothing stored), a store
    with facts (without ``--merge``), a server on the store, or a failure part way (the
    message says up to which line the facts are stored); 2 for a bad config or a store
    that cannot be opened."""
    from llmkg.engine.exchange import LineError
    from llmkg.engine.importer import ImportStoppedError, StoreNotEmptyError, import_file
    from llmkg.store import StoreError

    if args.file != "-" and not Path(args.file).is_file():
        return _fail("import", f"{args.file}: no such file")
    try:
        config = engine_config(settings)
    except ConfigError as e:
        return _fail("import", f"bad config: {e}", EXIT_CONFIG)
    progress = progress_to_stderr(args)
    try:
        with _offline_store(config, "import") as store:
            summary = import_file(
                store,
                args.file,
                dim=config.dim,
                max_text_length=config.max_text_length,
                batch=config.max_batch,
                merge=args.merge,
                progress=progress,
            )
    except _RefusedError as e:
        return e.code
    except LineError as e:
        return _fail("import", f"{args.file}: {e}; nothing was imported")
    except (StoreNotEmptyError, ImportStoppedError) as e:
        return _fail("import", str(e))
    except (StoreError, OSError) as e:
        return _fail("import", f"nothing was imported: {e}")
    answer = summary.to_dict()
    if config.store_backend == "sqlite":
        started = time.monotonic()
        code = _build_index(config, progress)
        if code:
            return code
        answer["index_seconds"] = round(time.monotonic() - started, 3)
    _answer(answer, to_stderr=False)
    return 0


def _build_index(config: EngineConfig, progress: ProgressFactory) -> int:
    """An engine opened on the store and closed: its start-up replay puts the imported
    facts in the index (in large batches), and its close writes a snapshot with them."""
    from llmkg.engine import AllocationEngine, DataDirectoryInUseError
    from llmkg.store import StoreError

    try:
        AllocationEngine(config, progress).close()
    except (DataDirectoryInUseError, StoreError) as e:
        return _fail(
            "import",
            f"the facts are stored, but the index was not built ({e}); the server's start "
            "builds it",
        )
    return 0
