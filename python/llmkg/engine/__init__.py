"""The allocation engine: where a fact belongs, kept durably."""

from llmkg._core import LinkerError, LinkerTimeoutError
from llmkg.engine.backup import BackupError, restore
from llmkg.engine.config import EngineConfig, EngineConfigError
from llmkg.engine.engine import AllocationEngine
from llmkg.engine.exclusion import DataDirectoryInUseError, EngineClosedError
from llmkg.engine.facts import Fact, FactError
from llmkg.engine.follow import NotCaughtUpError
from llmkg.engine.results import (
    AllocationResult,
    ExpandedFact,
    ExpandedSearch,
    Neighbor,
    Node,
    Reached,
    SearchHit,
    Traversal,
)

__all__ = [
    "AllocationEngine",
    "AllocationResult",
    "BackupError",
    "DataDirectoryInUseError",
    "EngineClosedError",
    "EngineConfig",
    "EngineConfigError",
    "ExpandedFact",
    "ExpandedSearch",
    "Fact",
    "FactError",
    "LinkerError",
    "LinkerTimeoutError",
    "Neighbor",
    "Node",
    "NotCaughtUpError",
    "Reached",
    "SearchHit",
    "Traversal",
    "restore",
]
