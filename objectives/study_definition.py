"""The study definition: everything a worker needs to run trials, stored inside the study.

`hybridnas launch` validates a definition (from flags and/or a study YAML) and writes it to
`study.user_attrs["hybridnas"]`; a worker anywhere then needs only the storage URL and the
study name. Optuna does not persist samplers or pruners, so each worker rebuilds them from
the definition (`make_sampler`, `make_pruner`) when it loads the study.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hybridnas.models.config import ConfigError, format_validation_error, load_document
from hybridnas.search_space import SearchSpace, load_space, space_from_document
from hybridnas.training.engine import TrainSettings

USER_ATTR = "hybridnas"
DEFINITION_VERSION = 1

Objective = Literal["accuracy", "accuracy,params", "accuracy,macs"]
Sampler = Literal["tpe", "random", "nsga2"]
Pruner = Literal["hyperband", "median", "none"]

# Fields of TrainSettings the definition owns itself (epochs = Hyperband's max resource, the
# seed, and the device, which belongs to the worker).
_OWNED_TRAIN_FIELDS = ("epochs", "seed", "device")
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainSettings) if f.name not in _OWNED_TRAIN_FIELDS)

# What `launch` may change when it resumes an existing study; everything else must match.
BUDGET_FIELDS = ("trials", "timeout")


class StudyDefinition(BaseModel):
    """Dataset and split, search space, objective, sampler, pruner, budget, constraints, training."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = DEFINITION_VERSION
    dataset: str
    data_dir: str | None = None
    val_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    train_subset: Annotated[int, Field(ge=1)] | None = None
    val_subset: Annotated[int, Field(ge=1)] | None = None
    seed: int = 0
    epochs: Annotated[int, Field(ge=1)] = 10
    space: dict[str, Any]
    objective: Objective = "accuracy"
    sampler: Sampler | None = None
    pruner: Pruner | None = None
    reduction_factor: Annotated[int, Field(ge=2)] = 3
    trials: Annotated[int, Field(ge=1)] = 20
    timeout: Annotated[float, Field(gt=0)] | None = None
    max_params: Annotated[int, Field(ge=1)] | None = None
    max_macs: Annotated[int, Field(ge=1)] | None = None
    enqueue_presets: bool = False
    training: dict[str, Any] = Field(default_factory=dict)

    @field_validator("space", mode="before")
    @classmethod
    def _space_document(cls, value: Any) -> dict[str, Any]:
        """A built-in name or file path becomes its document, so the study holds the space itself."""
        if isinstance(value, (str, Path)):
            return load_space(value).document
        return space_from_document(value).document

    @field_validator("training")
    @classmethod
    def _training_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(TRAIN_FIELDS))
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; allowed: {', '.join(TRAIN_FIELDS)}")
        TrainSettings(**value)
        return value

    @model_validator(mode="after")
    def _fits_objective(self) -> StudyDefinition:
        if self.multi_objective and self.pruner not in (None, "none"):
            raise ValueError(f"pruner: Optuna cannot prune multi-objective studies; objective {self.objective!r} needs pruner none")
        return self

    @property
    def multi_objective(self) -> bool:
        return "," in self.objective

    @property
    def directions(self) -> list[str]:
        return ["maximize", "minimize"] if self.multi_objective else ["maximize"]

    @property
    def metric_names(self) -> list[str]:
        return ["val_top1", *self.objective.split(",")[1:]]

    @property
    def sampler_name(self) -> str:
        return self.sampler or ("nsga2" if self.multi_objective else "tpe")

    @property
    def pruner_name(self) -> str:
        return self.pruner or ("none" if self.multi_objective else "hyperband")

    def search_space(self) -> SearchSpace:
        return space_from_document(self.space)

    def make_sampler(self, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
        """Each worker gets its own seed: identical seeds would make parallel workers draw
        the same random start-up points."""
        seed = self.seed + seed_offset
        name = self.sampler_name
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """Hyperband as Zureick used it: one epoch is the smallest resource, `epochs` the largest."""
        name = self.pruner_name
        if name == "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=self.epochs, reduction_factor=self.reduction_factor
            )
        if name == "median":
            return optuna.pruners.MedianPruner(n_warmup_steps=1)
        return optuna.pruners.NopPruner()

    def train_settings(self, device: str) -> TrainSettings:
        """Search trials skip the inference-latency measurement unless the study asks for it."""
        settings = {"measure_latency": False, **self.training}
        return TrainSettings(**settings, epochs=self.epochs, seed=self.seed, device=device)

    def constraint_violations(self, params: int, macs: int) -> dict[str, float]:
        """Relative excess over each limit (<= 0 feasible), in Trial.set_constraint's convention."""
        limits = {"max_params": (params, self.max_params), "max_macs": (macs, self.max_macs)}
        return {key: value / limit - 1.0 for key, (value, limit) in limits.items() if limit is not None}

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def differences(self, other: StudyDefinition, ignore: tuple[str, ...] = BUDGET_FIELDS) -> list[str]:
        """Names of the fields whose values differ, for a resume that must not change the study."""
        mine, theirs = self.to_document(), other.to_document()
        return [k for k in mine if k not in ignore and mine[k] != theirs[k]]


def validate_definition(data: Any, source: str = "study definition") -> StudyDefinition:
    """Validate plain data, or raise ConfigError naming the field at fault."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return StudyDefinition.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {format_validation_error(err)}") from None
    except (ConfigError, ValueError, TypeError) as err:
        raise ConfigError(f"{source}: {err}") from None


def read_definition_file(path: str | Path) -> dict[str, Any]:
    """A study YAML as plain data; relative dataset and space paths are taken from the file's folder."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    data = load_document(raw, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return absolutize_paths(data, path.parent)


def absolutize_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make `folder:` datasets, data_dir and space files absolute, so workers started elsewhere
    (another working directory, a Ray actor) find the same files."""
    out = dict(data)
    dataset = out.get("dataset")
    if isinstance(dataset, str) and dataset.startswith("folder:"):
        out["dataset"] = "folder:" + str(_absolute(dataset.removeprefix("folder:"), base))
    if isinstance(out.get("data_dir"), str):
        out["data_dir"] = str(_absolute(out["data_dir"], base))
    space = out.get("space")
    if isinstance(space, str) and (base / space).expanduser().is_file():
        out["space"] = str(_absolute(space, base))
    return out


def _absolute(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def stored_definition(study: optuna.Study) -> StudyDefinition:
    """The definition a study was launched with; a study created elsewhere has none."""
    data = study.user_attrs.get(USER_ATTR)
    if data is None:
        raise ConfigError(
            f"study '{study.study_name}' has no hybridnas definition; create it with `hybridnas launch`"
        )
    return validate_definition(data, f"study '{study.study_name}' definition")
