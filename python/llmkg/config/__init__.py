"""llmkg's layered TOML config: schema, loading (file, environment overlay, variables)
and the mapping onto the engine's settings."""

from typing import TYPE_CHECKING, Any

from llmkg.config.loader import ConfigError, load_settings, masked, to_builtins
from llmkg.config.schema import INACTIVE, Settings

if TYPE_CHECKING:
    from llmkg.config.to_engine import engine_config


def __getattr__(name: str) -> Any:
    # Imported when first asked for: the engine's settings read their defaults from
    # llmkg.config.schema, so importing the engine from here at once would be circular.
    if name == "engine_config":
        from llmkg.config.to_engine import engine_config

        return engine_config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "INACTIVE",
    "ConfigError",
    "Settings",
    "engine_config",
    "load_settings",
    "masked",
    "to_builtins",
]
