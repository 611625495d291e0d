"""Architecture configs, the super-model that builds them, and the papers' presets."""

from hybridnas.models.config import ArchConfig, ConfigError, dump_config, load_config, parse_config
from hybridnas.models.supermodel import HybridNet, HybridOutput, build

__all__ = [
    "ArchConfig",
    "ConfigError",
    "HybridNet",
    "HybridOutput",
    "build",
    "dump_config",
    "load_config",
    "parse_config",
]
