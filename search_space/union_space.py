"""`kind: union` spaces: the `knobs:` section, read as the union program (union.py) reads it.

A knob is written in the one grammar; one value stands for a one-option choice or a one-point
range, so the program always gets `UnionKnobs`. Finding a preset's parameters replays the
program with the preset's own answers (`config_answer`).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar, get_origin

from pydantic import BaseModel

from hybridnas.common import ConfigError, validate_model
from hybridnas.models.config import ArchConfig
from hybridnas.search_space.grammar import FORMS, is_choice, is_range, normalize_entry
from hybridnas.search_space.space import SearchSpace, same_architecture
from hybridnas.search_space.union import FloatRange, IntRange, UnionKnobs, config_answer, suggest_union


class UnionSpace(SearchSpace):
    """The union program over the ranges of a `knobs:` section."""

    kind: ClassVar[str] = "union"
    section: ClassVar[str] = "knobs"

    @classmethod
    def normalized_section(cls, section: Any) -> dict[str, Any]:
        knobs = section or {}
        if not isinstance(knobs, dict):
            raise ConfigError("knobs: expected a mapping of knob names to their values")
        return {knob: _knob(knob, normalize_entry(node, f"knobs.{knob}", lists_are_choices=True))
                for knob, node in knobs.items()}

    def check(self, source: str) -> None:
        _parse_knobs(self.document["knobs"], source)

    @cached_property
    def knobs(self) -> UnionKnobs:
        """The knobs as the program reads them (checked when the space was loaded)."""
        return _parse_knobs(self.document.get("knobs") or {}, self.name)

    def suggest_architecture(self, trial: Any, *, num_classes: int, image_size: int) -> dict[str, Any]:
        return suggest_union(trial, self.knobs, num_classes=num_classes, image_size=image_size)

    def params_for(self, target: ArchConfig) -> dict[str, Any] | None:
        replay = _ReplayTrial(target)
        try:
            produced = self.suggest(replay, num_classes=target.input.num_classes, image_size=target.input.image_size)
        except (_NoFit, ConfigError):
            return None
        return replay.params if same_architecture(produced, target) else None


class _KnobsSection(BaseModel):
    """The section as a field, so that pydantic's locations read `knobs.<knob>`."""

    knobs: UnionKnobs


def _parse_knobs(knobs: dict[str, Any], source: str) -> UnionKnobs:
    return validate_model(_KnobsSection, {"knobs": knob_values(knobs)}, source).knobs


def _knob(knob: str, node: Any) -> Any:
    """A normalized knob entry, refused where the union program cannot read it that way: a
    knob of values to choose from takes a choice or one value, a range knob a range or one value."""
    field = UnionKnobs.model_fields.get(knob)
    if field is None:
        return node  # UnionKnobs names the unknown knob
    where = f"knobs.{knob}"
    if isinstance(node, dict) and "name" in node:
        raise ConfigError(f"{where}: name: the union program names its own parameters")
    if field.annotation in (IntRange, FloatRange):
        if is_choice(node, lists_are_choices=True):
            raise ConfigError(f"{where}: takes a range {{low: L, high: H, step: S}} or a value, not a choice")
    elif get_origin(field.annotation) is list:
        if is_range(node):
            raise ConfigError(f"{where}: takes a choice [a, b, ...] or a value, not a range")
    elif is_choice(node, lists_are_choices=True) or is_range(node):
        raise ConfigError(f"{where}: takes a value, not a choice or a range; {FORMS}")
    return node


def knob_values(knobs: dict[str, Any]) -> dict[str, Any]:
    """Normalized knobs as UnionKnobs reads them: one value of a choice knob is a one-option
    choice, one value of a range knob a range from it to itself."""
    out = dict(knobs)
    for knob, node in knobs.items():
        field = UnionKnobs.model_fields.get(knob)
        if field is None or is_choice(node, lists_are_choices=True) or is_range(node):
            continue
        if field.annotation in (IntRange, FloatRange):
            out[knob] = {"low": node, "high": node}
        elif get_origin(field.annotation) is list:
            out[knob] = [node]
    return out


class _NoFit(Exception):
    """The target's answer is not among the program's choices."""


class _ReplayTrial:
    """Answers the union program's questions from a target config, to find its params."""

    def __init__(self, target: ArchConfig) -> None:
        self.target = target.model_dump(mode="json")
        self.params: dict[str, Any] = {}

    def _answer(self, name: str) -> Any:
        value = config_answer(name, self.target)
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        value = self._answer(name)
        if value not in choices:
            raise _NoFit(name)
        return value

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        value = self._answer(name)
        if not low <= value <= high or (value - low) % step:
            raise _NoFit(name)
        return value

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False) -> float:
        value = self._answer(name)
        off_grid = step is not None and abs((value - low) / step - round((value - low) / step)) > 1e-6
        if not low - 1e-9 <= value <= high + 1e-9 or off_grid:
            raise _NoFit(name)
        return value
