"""What every kind of search space offers a study: one small interface, one class per `kind:`.

A space is its name and its document (what a study stores), in the one grammar. Each kind reads
its own section (`knobs:`, `template:`) to suggest an architecture define-by-run and to find the
parameters of a given one; the optional `training:` section is searched the same way by every
kind, so it is handled here once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from hybridnas.models.canonical import architecture_key
from hybridnas.models.config import ArchConfig, parse_config
from hybridnas.models.presets import PRESETS, preset
from hybridnas.search_space.template import match_template, suggest_template
from hybridnas.training.settings import TrainSettings


@dataclass(frozen=True)
class SearchSpace(ABC):
    """A loaded space: its name and the document it came from (stored in each study)."""

    kind: ClassVar[str]
    section: ClassVar[str]  # the document's key that this kind reads ("knobs", "template")

    name: str
    document: dict[str, Any]

    @classmethod
    @abstractmethod
    def normalized_section(cls, section: Any) -> Any:
        """This kind's section in the one grammar; a ConfigError names the entry at fault."""

    def check(self, source: str) -> None:
        """Refuse, naming `source`, a section that reads as the grammar but that this kind cannot use."""

    @abstractmethod
    def suggest_architecture(self, trial: Any, *, num_classes: int, image_size: int) -> dict[str, Any]:
        """Config data for one trial: define-by-run, the trial is asked every knob it needs."""

    @abstractmethod
    def params_for(self, target: ArchConfig) -> dict[str, Any] | None:
        """The trial params under which this space suggests `target` (up to spelling), else None."""

    def suggest(self, trial: Any, *, num_classes: int, image_size: int) -> ArchConfig:
        """Define-by-run: ask the trial for every knob this architecture needs."""
        data = self.suggest_architecture(trial, num_classes=num_classes, image_size=image_size)
        data["name"] = f"{self.name}-sample"
        return parse_config(data)

    @property
    def training_fields(self) -> tuple[str, ...]:
        """The training settings this space searches (its optional `training:` section)."""
        return tuple(self._training)

    def suggest_training(self, trial: Any) -> dict[str, Any]:
        """The trial's training settings from the `training:` section; {} without one."""
        return {field: suggest_template(trial, node, f"training.{field}", lists_are_choices=True)
                for field, node in self._training.items()}

    def training_params(self, settings: TrainSettings) -> dict[str, Any]:
        """The `training:` params under which a trial trains with `settings` (lr and weight decay
        as resolved for its optimizer), field by field; a field whose value lies outside the
        section's range is left out, for the sampler to choose."""
        values = settings.resolved().model_dump()
        params: dict[str, Any] = {}
        for field, node in self._training.items():
            params.update(match_template(node, values[field], f"training.{field}", lists_are_choices=True) or {})
        return params

    def warm_start(self, *, num_classes: int, image_size: int) -> list[tuple[str, dict[str, Any]]]:
        """(preset, params) for each paper preset this space can express, for enqueue_trial."""
        found = []
        for name in PRESETS:
            target = preset(name).with_input(num_classes=num_classes, image_size=image_size)
            params = self.params_for(target)
            if params is not None:
                found.append((name, params))
        return found

    @property
    def _training(self) -> dict[str, Any]:
        return self.document.get("training") or {}


def same_architecture(a: ArchConfig, b: ArchConfig) -> bool:
    """Equal up to the name and to spellings of the same model (see hybridnas.models.canonical)."""
    return architecture_key(a) == architecture_key(b)


def sample_configs(
    space: SearchSpace, n: int, *, seed: int = 0, num_classes: int | None = None, image_size: int | None = None
) -> list[ArchConfig]:
    """N configs from the space with Optuna's RandomSampler (the `hybridnas sample` command)."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    classes = num_classes or 10
    size = image_size or 32
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(space.suggest(trial, num_classes=classes, image_size=size))
        study.tell(trial, 0.0)
    return configs
