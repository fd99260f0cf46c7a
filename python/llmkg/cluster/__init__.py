"""A local llmkg cluster: PostgreSQL from the machine's own binaries (optionally with a
synchronous standby) and N servers that follow it (``llmkg-server cluster up``)."""

from llmkg.cluster.local import (
    ClusterError,
    down,
    promote,
    read_spec,
    restart_node,
    start_node,
    up,
)
from llmkg.cluster.postgres import PostgresError, PostgresServer

__all__ = [
    "ClusterError",
    "PostgresError",
    "PostgresServer",
    "down",
    "promote",
    "read_spec",
    "restart_node",
    "start_node",
    "up",
]
