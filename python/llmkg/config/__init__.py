"""llmkg's layered TOML config: schema, loading (file, environment overlay, variables)
and the mapping onto the engine's settings."""

from llmkg.config.loader import ConfigError, load_settings, masked, to_builtins
from llmkg.config.schema import INACTIVE, Settings
from llmkg.config.to_engine import engine_config

__all__ = [
    "INACTIVE",
    "ConfigError",
    "Settings",
    "engine_config",
    "load_settings",
    "masked",
    "to_builtins",
]
