"""The `training:` section any space may have: searchable TrainSettings fields, each a value, a
choice or a range in the one grammar, every value of which must be a valid setting."""

from __future__ import annotations

from typing import Any

from hybridnas.common import ConfigError
from hybridnas.search_space.grammar import edge_values, normalize_entry
from hybridnas.training.settings import SEARCHABLE_FIELDS, parse_settings


def normalized_training(section: dict[str, Any]) -> dict[str, Any]:
    """The section's entries in the one grammar (a ConfigError names the entry)."""
    return {field: normalize_entry(node, f"training.{field}", lists_are_choices=True)
            for field, node in section.items()}


def check_training(section: Any, source: str) -> None:
    """Refuse, naming `source` and the field, a section that is not a mapping of searchable
    settings or that can produce an invalid setting."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: training: expected a mapping of training settings")
    for field, node in section.items():
        where = f"{source}: training.{field}"
        if field not in SEARCHABLE_FIELDS:
            raise ConfigError(f"{where}: not a searchable training setting; choose from {', '.join(SEARCHABLE_FIELDS)}")
        for value in edge_values(node, lists_are_choices=True):
            try:
                parse_settings({field: value})
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
