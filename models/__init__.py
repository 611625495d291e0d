"""Architecture configs, the super-model that builds them, and the papers' presets.

The package's names load on first use (PEP 562): importing `hybridnas.models` or its papers
module builds no pydantic model and imports no torch, so the CLI's start-up stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybridnas.common import ConfigError
from hybridnas.common import lazy_names

if TYPE_CHECKING:
    from hybridnas.models.config import ArchConfig, dump_config, load_config, parse_config
    from hybridnas.models.supermodel import HybridNet, HybridOutput, build

_SOURCES = {
    "ArchConfig": "hybridnas.models.config",
    "dump_config": "hybridnas.models.config",
    "load_config": "hybridnas.models.config",
    "parse_config": "hybridnas.models.config",
    "HybridNet": "hybridnas.models.supermodel",
    "HybridOutput": "hybridnas.models.supermodel",
    "build": "hybridnas.models.supermodel",
}

__all__ = ["ConfigError", *sorted(_SOURCES)]
__getattr__, __dir__ = lazy_names(__name__, _SOURCES)
