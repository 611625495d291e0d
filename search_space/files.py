"""Space files: the built-in ones, loading a file or a stored document, and printing one.

Loading is the same for every kind: the top-level keys are checked, the kind's section and the
`training:` section are normalized to the one grammar (the old spelling rewritten), and the
kind's class refuses what it cannot use; every error is one ConfigError naming the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hybridnas.common import ConfigError, read_document_file
from hybridnas.search_space.grammar import is_choice, is_range
from hybridnas.search_space.space import SearchSpace
from hybridnas.search_space.template_space import TemplateSpace
from hybridnas.search_space.training_section import check_training, normalized_training
from hybridnas.search_space.union_space import UnionSpace

SPACES_DIR = Path(__file__).parent / "spaces"
BUILTIN_SPACES = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
SPACE_KINDS: dict[str, type[SearchSpace]] = {space.kind: space for space in (UnionSpace, TemplateSpace)}
_KEYS = {"kind", "name", "description", "training", *(space.section for space in SPACE_KINDS.values())}


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A built-in space by name, or a space file by path; errors name the field at fault."""
    text = str(name_or_path)
    path = SPACES_DIR / f"{text}.yaml" if text in BUILTIN_SPACES else Path(text)
    if not path.is_file():
        raise ConfigError(f"space: {text!r} is neither a built-in space ({', '.join(BUILTIN_SPACES)}) nor a file")
    return space_from_document(read_document_file(path), source=str(path))


def space_from_document(document: Any, source: str = "space") -> SearchSpace:
    """Validate a space document (a file, or as stored in a study) and wrap it, its entries
    normalized to the one grammar: the old spelling and the new load to the same document."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    kind = document.get("kind")
    name = document.get("name")
    space_class = SPACE_KINDS.get(kind) if isinstance(kind, str) else None
    if space_class is None:
        raise ConfigError(f"{source}: kind: must be {' or '.join(map(repr, SPACE_KINDS))}, got {kind!r}")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: name: a space needs a name")
    unknown = set(document) - _KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown keys {sorted(unknown)}")
    try:
        document = {**document, **_normalized_sections(document, space_class)}
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    check_training(document.get("training"), source)
    space = space_class(name=name, document=document)
    space.check(source)
    return space


def _normalized_sections(document: dict[str, Any], space_class: type[SearchSpace]) -> dict[str, Any]:
    """The `training:` section and the kind's own in the one grammar (ConfigError names the entry)."""
    out: dict[str, Any] = {}
    training = document.get("training")
    if isinstance(training, dict):
        out["training"] = normalized_training(training)
    out[space_class.section] = space_class.normalized_section(document.get(space_class.section))
    return out


def format_space(space: SearchSpace) -> str:
    """The space file in the one grammar, as YAML that loads to the same distributions
    (`hybridnas sample --space FILE --print-space`, to migrate a file in the old spelling)."""
    return yaml.dump(_flow_entries(space.document), Dumper=_SpaceDumper, sort_keys=False,
                     default_flow_style=None, width=110, allow_unicode=True)


class _Entry(dict):
    """A range or choice mapping, written on one line as a space file writes it."""


class _SpaceDumper(yaml.SafeDumper):
    pass


_SpaceDumper.add_representer(
    _Entry, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True))


def _flow_entries(node: Any) -> Any:
    if is_choice(node) or is_range(node):
        return _Entry({k: _flow_entries(v) for k, v in node.items()})
    if isinstance(node, dict):
        return {k: _flow_entries(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_flow_entries(v) for v in node]
    return node
