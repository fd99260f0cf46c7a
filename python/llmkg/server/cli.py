"""``llmkg-server``: serve, check the config, probe a running server, the operator
commands (checkpoint, backup, restore, migrate, token, topology; export and import:
``datacli``), and a local cluster (``llmkg.cluster``)."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any

from llmkg.config import ConfigError, Settings, load_settings, masked, to_builtins
from llmkg.config.units import parse_duration
from llmkg.server.datacli import (
    add_commands,
    add_progress_option,
    export_command,
    import_command,
    progress_to_stderr,
    setup_logging,
)

EXIT_CONFIG = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmkg-server",
        description="The llmkg allocation server. Without a command it serves.",
    )
    p.add_argument(
        "--config",
        default=os.environ.get("LLMKG_CONFIG_PATH"),
        help="base TOML file (default $LLMKG_CONFIG_PATH, else the built-in defaults)",
    )
    p.add_argument(
        "--environment",
        default=os.environ.get("LLMKG_ENVIRONMENT"),
        help="overlay environments/NAME.toml beside the base file (default $LLMKG_ENVIRONMENT)",
    )
    p.add_argument(
        "--check-config",
        action="store_true",
        help="validate, print the effective config (secrets masked), exit 0 (or 2)",
    )
    p.add_argument(
        "--health-check",
        action="store_true",
        help="exit 0 if the local server's /health/live answers 200, else 1",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", help="serve the API (the default)")
    for name, text in (
        ("checkpoint", "write an index snapshot now"),
        ("backup", "write a backup into storage.backup_directory"),
    ):
        c = sub.add_parser(name, help=text + " (through the running server, else offline)")
        c.add_argument("--token", default=os.environ.get("LLMKG_TOKEN"), help="admin token")
        if name == "backup":
            add_progress_option(c)
    r = sub.add_parser("restore", help="restore a backup into storage.data_directory (offline)")
    r.add_argument("backup", help="the backup folder (with its manifest.json)")
    add_progress_option(r)
    add_commands(sub)
    m = sub.add_parser(
        "migrate",
        help="upgrade the configured store's schema (offline), or copy an SQLite store "
        "into the configured PostgreSQL database",
    )
    m.add_argument(
        "--from-sqlite",
        metavar="DIR",
        help="a data directory holding llmkg.sqlite3 (read only) to copy into the empty "
        "PostgreSQL database of storage.postgresql",
    )
    add_progress_option(m)
    from llmkg.cluster.command import add_parser as add_cluster_parser

    add_cluster_parser(sub)
    from llmkg.topology.command import add_parser as add_topology_parser

    add_topology_parser(sub)
    t = sub.add_parser("token", help="mint an access and a refresh token")
    t.add_argument("--subject", required=True)
    t.add_argument("--scope", required=True, help="comma-separated: read, write, admin")
    t.add_argument("--expiry", help="access token lifetime, e.g. 1h (default token_expiry)")
    return p


def local_url(settings: Settings, path: str) -> tuple[str, ssl.SSLContext | None]:
    host = settings.server.bind_address
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    if not settings.security.enable_tls:
        return f"http://{host}:{settings.server.http_port}{path}", None
    # The local server, by address: its certificate names the service, not 127.0.0.1.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if settings.security.require_client_cert:
        context.load_cert_chain(settings.security.cert_file, settings.security.key_file)
    return f"https://{host}:{settings.server.http_port}{path}", context


def request(
    settings: Settings, method: str, path: str, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    url, context = local_url(settings, path)
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    timeout = settings.health_checks.health_check_timeout
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def health_check(settings: Settings) -> int:
    try:
        status, _ = request(settings, "GET", "/health/live")
    except (OSError, ValueError):
        return 1
    return 0 if status == 200 else 1


def operate(settings: Settings, args: argparse.Namespace) -> int:
    """checkpoint / backup through the running server (which logs a backup's progress);
    offline when none answers."""
    command = args.command
    path = {"checkpoint": "/api/v1/admin/checkpoint", "backup": "/api/v1/admin/backup"}[command]
    try:
        status, body = request(settings, "POST", path, args.token)
    except (urllib.error.URLError, ConnectionError):
        return offline(settings, args)
    print(json.dumps(body))
    return 0 if status == 200 else 1


def offline(settings: Settings, args: argparse.Namespace) -> int:
    from llmkg.config import engine_config
    from llmkg.engine import AllocationEngine
    from llmkg.store import BackupUnsupportedError, StoreOpenError

    command = args.command
    try:
        engine = AllocationEngine(engine_config(settings))
    except StoreOpenError as e:
        # As the server does: a damaged, too new or not yet migrated store is a message
        # and exit 2, not a traceback.
        print(f"llmkg-server {command}: cannot open the store: {e}", file=sys.stderr)
        return EXIT_CONFIG
    with engine:
        if command == "checkpoint":
            print(json.dumps({"sequence": engine.checkpoint()}))
        else:
            try:
                folder = engine.backup(progress=progress_to_stderr(args))
            except BackupUnsupportedError as e:
                print(f"llmkg-server backup: {e}", file=sys.stderr)
                return 1
            print(json.dumps({"path": str(folder)}))
    return 0


def restore(settings: Settings, args: argparse.Namespace) -> int:
    from llmkg.engine import BackupError, DataDirectoryInUseError
    from llmkg.engine import restore as restore_backup

    if settings.storage.backend != "sqlite":
        # A backup holds an SQLite store: restored beside a PostgreSQL one, nothing would read it.
        print(
            "llmkg-server restore: storage.backend is not 'sqlite'; restore the database "
            "with its own tools (and start on an empty data directory)",
            file=sys.stderr,
        )
        return 1
    backup = args.backup
    try:
        manifest = restore_backup(
            backup, settings.storage.data_directory, progress=progress_to_stderr(args)
        )
    except (BackupError, DataDirectoryInUseError) as e:
        print(f"llmkg-server restore: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"restored": backup, "nodes": manifest["nodes"]}))
    return 0


def migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 after upgrading (or copying); 2 for a store newer than this llmkg or a config
    that cannot work; 1 for a refused or failed copy, or an unreachable database."""
    import sqlite3

    import psycopg

    from llmkg.config import engine_config
    from llmkg.store import StoreError, StoreOpenError, StoreVersionError
    from llmkg.store.migrate import TargetNotEmptyError, copy_sqlite, upgrade

    def fail(message: str, code: int) -> int:
        print(f"llmkg-server migrate: {message}", file=sys.stderr)
        return code

    if args.from_sqlite is not None and settings.storage.backend != "postgresql":
        return fail("--from-sqlite copies into PostgreSQL: storage.backend is not it", EXIT_CONFIG)
    try:
        config = engine_config(settings)
        if args.from_sqlite is None:
            result = upgrade(config)
        else:
            result = copy_sqlite(
                args.from_sqlite,
                config.postgres_dsn,
                partition=config.partition,
                connect_timeout=config.postgres_connect_timeout,
                progress=progress_to_stderr(args),
            )
    except ConfigError as e:
        return fail(f"bad config: {e}", EXIT_CONFIG)
    except StoreVersionError as e:
        return fail(str(e), EXIT_CONFIG)
    except (TargetNotEmptyError, StoreOpenError, StoreError) as e:
        return fail(str(e), 1)
    except psycopg.Error as e:
        # The server's message (a lost connection, a full disk): the transaction rolled
        # back, so the database is as it was.
        return fail(f"failed, and nothing of it was committed: {e}", 1)
    except sqlite3.Error as e:
        return fail(f"cannot read the SQLite store: {e}", 1)
    print(json.dumps(result))
    return 0


def token(settings: Settings, args: argparse.Namespace) -> int:
    from llmkg.server.startup import StartupError
    from llmkg.server.tokens import Tokens, parse_scopes

    auth = settings.security.authentication
    if auth.type != "jwt":
        print("llmkg-server token: security.authentication.type is not 'jwt'", file=sys.stderr)
        return EXIT_CONFIG
    try:
        scopes = parse_scopes(args.scope)
        expiry = parse_duration(args.expiry) if args.expiry else None
        pair = Tokens(auth).pair(args.subject, scopes, expiry)
    except (StartupError, ValueError) as e:
        print(f"llmkg-server token: {e}", file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(pair))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "cluster":
        # Its servers read their own config; the cluster's is its arguments.
        from llmkg.cluster.command import run

        return run(args)
    try:
        settings = load_settings(args.config, args.environment)
    except ConfigError as e:
        print(f"llmkg-server: bad config: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(json.dumps(masked(to_builtins(settings)), indent=2))
        return 0
    if args.health_check:
        return health_check(settings)
    if args.command in ("backup", "restore", "export", "import", "migrate"):
        setup_logging()
    if args.command in ("checkpoint", "backup"):
        return operate(settings, args)
    if args.command == "restore":
        return restore(settings, args)
    if args.command == "export":
        return export_command(settings, args)
    if args.command == "import":
        return import_command(settings, args)
    if args.command == "migrate":
        return migrate(settings, args)
    if args.command == "token":
        return token(settings, args)
    if args.command == "topology":
        from llmkg.topology.command import run as topology

        return topology(settings, args)
    from llmkg.server.runner import serve
    from llmkg.server.startup import StartupError

    try:
        return serve(settings)
    except StartupError as e:
        print(f"llmkg-server: cannot start: {e}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
