"""A model and how to train it, in one file: what `export` writes and `train` and `summary` read.

The architecture is written in its canonical form (hybridnas.models.canonical); the training
settings the trial used, if any, sit beside it as a `training:` section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from hybridnas.common import ConfigError, read_document_file
from hybridnas.models.canonical import canonical_config
from hybridnas.models.config import ArchConfig, parse_config
from hybridnas.training.settings import SEARCHABLE_FIELDS, parse_settings

TRAINING_SECTION = "training"


def export_document(cfg: ArchConfig, training: dict[str, Any] | None = None) -> dict[str, Any]:
    """The canonical architecture, with the training settings beside it when there are any."""
    document = canonical_config(cfg)
    if training:
        document[TRAINING_SECTION] = dict(training)
    return document


def write_document(document: dict[str, Any], path: str | Path) -> None:
    """YAML, or JSON for a .json path."""
    path = Path(path)
    text = json.dumps(document, indent=2) + "\n" if path.suffix == ".json" else yaml.safe_dump(document, sort_keys=False)
    path.write_text(text)


def read_document(path: str | Path) -> tuple[ArchConfig, dict[str, Any]]:
    """(architecture, training settings) of a config file; a file without a training section
    (any plain architecture config) gives {}."""
    data = read_document_file(path)
    training = data.pop(TRAINING_SECTION, None) if isinstance(data, dict) else None
    cfg = parse_config(data, source=str(path))
    if training is None:
        return cfg, {}
    if not isinstance(training, dict) or not set(training) <= set(SEARCHABLE_FIELDS):
        raise ConfigError(f"{path}: training: expected a mapping of {', '.join(SEARCHABLE_FIELDS)}")
    parse_settings(training)
    return cfg, training
