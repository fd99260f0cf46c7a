"""A client of the llmkg HTTP API: ``Client`` (blocking) and ``AsyncClient``, with the
engine's method names and result types (``llmkg.engine.Node``, ``SearchHit``,
``AllocationResult``, ``Traversal``, ``ExpandedSearch``), errors by kind (``ApiError``
and its subclasses), retries of safe calls on 429/503 and the refresh of an expired
access token.

The clients (and httpx under them) are imported when first used, so that importing the
errors or the types costs no HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmkg.client.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
    UnavailableError,
    ValidationError,
)
from llmkg.client.retry import RetryPolicy
from llmkg.client.types import (
    AccessToken,
    Backup,
    Entity,
    FactInput,
    Health,
    HealthCheck,
    SearchExpand,
    SearchFilter,
    Vector,
)

if TYPE_CHECKING:
    from llmkg.client.aio import AsyncClient
    from llmkg.client.sync import Client

__all__ = [
    "AccessToken",
    "ApiConnectionError",
    "ApiError",
    "ApiTimeoutError",
    "AsyncClient",
    "Backup",
    "BadRequestError",
    "Client",
    "ConflictError",
    "Entity",
    "FactInput",
    "ForbiddenError",
    "Health",
    "HealthCheck",
    "NotFoundError",
    "RateLimitedError",
    "RetryPolicy",
    "SearchExpand",
    "SearchFilter",
    "ServerError",
    "UnauthorizedError",
    "UnavailableError",
    "ValidationError",
    "Vector",
]


def __getattr__(name: str) -> object:
    if name == "Client":
        from llmkg.client.sync import Client

        return Client
    if name == "AsyncClient":
        from llmkg.client.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'llmkg.client' has no attribute {name!r}")
