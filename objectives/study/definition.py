"""The study definition: everything a worker needs to run trials, stored inside the study.

`hybridnas launch` validates a definition (from flags and/or a study YAML) and writes it to
`study.user_attrs[DEFINITION_ATTR]`; a worker anywhere then needs only the storage URL and the
study name. Optuna does not persist samplers or pruners, so each worker rebuilds them from
the definition (`make_sampler`, `make_pruner`) when it loads the study.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hybridnas.common import ConfigError, UsageError, read_document_file, validate_model
from hybridnas.objectives.study.records import DEFINITION_ATTR, KIND_ATTR, RETRAIN, RETRAIN_ATTR, SEARCH
from hybridnas.training.datasets import spec_problem
from hybridnas.training.settings import MAX_EPOCHS, MAX_SEED, SEARCHABLE_FIELDS, TrainSettings, parse_settings

if TYPE_CHECKING:
    import optuna

    from hybridnas.search_space import SearchSpace

DEFINITION_VERSION = 1
# A study name's longest length: room below Optuna's 512-character column for the `/retrain`
# suffix of its companion, and short enough to print on one line.
STUDY_NAME_MAX = 200

Objective = Literal["accuracy", "accuracy,params", "accuracy,macs", "accuracy,latency"]
Sampler = Literal["tpe", "random", "nsga2"]
Pruner = Literal["hyperband", "median", "none"]


# What `launch` may change when it resumes an existing study; everything else must match.
BUDGET_FIELDS = ("trials", "timeout")
# The fields `launch` takes as flags (each with its field's type and description as help), and
# the training settings it takes as flags into `training`.
DEFINITION_FLAGS = (
    "dataset", "data_dir", "train_subset", "val_subset", "test_subset", "val_fraction", "epochs", "space", "objective", "sampler",
    "local_search", "moves_learn_from_pruned",
    "pruner", "trials", "timeout", "max_params", "max_macs", "max_latency_ms", "enqueue_presets", "seed",
)
TRAINING_FLAGS = ("batch_size", "optimizer", "lr", "weight_decay", "label_smoothing")
# Upper bounds far above any real study, so a typo is refused at launch instead of stored:
# a worker would overflow on it (a seed past numpy's range) or a budget would never end.
MAX_TRIALS = 1_000_000
MAX_IMAGES = 1_000_000_000
MAX_TIMEOUT_S = 365 * 24 * 3600
MAX_LATENCY_MS = 3_600_000.0
# Each limit a study may set, and the quantity of a sample it bounds, as messages name it.
LIMITS = {"max_params": "params", "max_macs": "MACs", "max_latency_ms": "latency (ms, batch 1)"}
MAX_MODEL_SIZE = 10**15


class StudyDefinition(BaseModel):
    """Dataset and split, search space, objective, sampler, pruner, budget, constraints, training."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    version: Literal[1] = DEFINITION_VERSION
    dataset: str = Field(description="cifar10 | cifar100 | folder:PATH (an ImageFolder tree or .tar[.gz]).")
    data_dir: str | None = Field(None, description="Where cifar10/cifar100 live (default $HYBRIDNAS_DATA).")
    val_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.1, description="Share of the training split held out for validation.")
    train_subset: Annotated[int, Field(ge=1, le=MAX_IMAGES)] | None = Field(
        None, description="Train on the first N training images.")
    val_subset: Annotated[int, Field(ge=1, le=MAX_IMAGES)] | None = Field(
        None, description="Validate on the first N validation images.")
    test_subset: Annotated[int, Field(ge=1, le=MAX_IMAGES)] | None = Field(
        None, description="Test images for `retrain --test`: the first N of the dataset's test split, or, "
        "for a dataset without one, N training images held out from the search (seeded, stratified).")
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = Field(
        0, description="Seed of the split, the samplers and training (0 to 2**32-1).")
    epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = Field(
        10, description="Most epochs a trial may run (Hyperband's max resource).")
    space: dict[str, Any] = Field(
        "union", validate_default=True, description="A built-in space name or a space YAML file (default: union).")
    objective: Objective = Field(
        "accuracy", description="accuracy | accuracy,params | accuracy,macs | accuracy,latency (batch 1, ms).")
    sampler: Sampler | None = Field(None, description="tpe | random | nsga2 (default: tpe, nsga2 for two objectives).")
    local_search: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.5, description="With tpe: the share of trials after start-up that are local-search moves from the "
        "best trial (0: TPE alone).")
    moves_learn_from_pruned: bool = Field(
        False, description="With local_search: the moves' model of which edit pays also learns from pruned trials, "
        "each at the epoch it reached (default: complete trials only).")
    pruner: Pruner | None = Field(
        None, description="hyperband | median | none (default: hyperband; none for two objectives).")
    reduction_factor: Annotated[int, Field(ge=2, le=100)] = Field(3, description="Hyperband's reduction factor.")
    trials: Annotated[int, Field(ge=1, le=MAX_TRIALS)] = Field(20, description="Trial budget (COMPLETE + PRUNED trials).")
    timeout: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] | None = Field(
        None, description="Seconds from the study's first trial after which no trial starts (at most a year).")
    max_params: Annotated[int, Field(ge=1, le=MAX_MODEL_SIZE)] | None = Field(None, description="Parameter limit.")
    max_macs: Annotated[int, Field(ge=1, le=MAX_MODEL_SIZE)] | None = Field(None, description="MAC limit (one image).")
    max_latency_ms: Annotated[float, Field(gt=0, le=MAX_LATENCY_MS, allow_inf_nan=False)] | None = Field(
        None, description="Inference latency limit at batch 1 (ms, on the worker's device, measured before training).")
    enqueue_presets: bool = Field(False, description="Run the paper presets that fit the space first.")
    training: dict[str, Any] = Field(default_factory=dict)

    @field_validator("dataset")
    @classmethod
    def _dataset_spec(cls, value: str) -> str:
        """Its form only: whether its files can be read is checked at launch (`check_dataset`), as a
        stored study must still load for `status` on a machine without the data."""
        problem = spec_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("space", mode="before")
    @classmethod
    def _space_document(cls, value: Any) -> dict[str, Any]:
        """A built-in name or file path becomes its document, so the study holds the space itself."""
        from hybridnas.search_space import load_space, space_from_document

        if isinstance(value, (str, Path)):
            return load_space(value).document
        return space_from_document(value).document

    @field_validator("training")
    @classmethod
    def _training_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(SEARCHABLE_FIELDS))
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; allowed: {', '.join(SEARCHABLE_FIELDS)}")
        parse_settings(value)
        return value

    @model_validator(mode="after")
    def _training_fixed_or_searched(self) -> StudyDefinition:
        both = sorted(set(self.training) & set(self.search_space().training_fields))
        if both:
            raise ValueError(f"training: {', '.join(both)} both fixed by the study and searched by the space; "
                             "keep one")
        return self

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
        from hybridnas.search_space import space_from_document

        return space_from_document(self.space)

    def make_sampler(self, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
        """Each worker gets its own seed: identical seeds would make parallel workers draw
        the same random start-up points."""
        import warnings

        import optuna
        from optuna.exceptions import ExperimentalWarning

        seed = (self.seed + seed_offset) % (MAX_SEED + 1)
        name = self.sampler_name
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        # The spaces are define-by-run and conditional (the union space's stage and stem
        # parameters exist only for some stage counts and block kinds). Plain multivariate TPE
        # models jointly only the parameters every trial has (7 of ~160 in the union space)
        # and samples the rest one by one; `group` models each set of parameters that occur
        # together jointly. On a flat space (a template, NAS-Bench-201) it changes nothing.
        # `multivariate` is explicit because `group` needs it (Optuna's default is off for two
        # objectives). Other settings stay at Optuna's defaults: on NAS-Bench-201 (bench/
        # search_quality.py) other start-up counts, EI candidate counts, prior weights and
        # gammas were no better than them. `group` is experimental; the warning says nothing
        # a study can act on. A share of the trials after TPE's start-up (`local_search`, half by
        # default), drawn at random, are local-search moves from the best trial instead
        # (`LocalSearchSampler`): on NAS-Bench-201 that finds better cells than TPE alone by 100
        # evaluations, where TPE's settings could not.
        # Both read the study's trials once per trial (`TrialSnapshotSampler`), not once per parameter.
        from hybridnas.objectives.samplers.local_search import LocalSearchSampler
        from hybridnas.objectives.samplers.trial_snapshot import TrialSnapshotSampler

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            tpe = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
        if not self.local_search:
            return TrialSnapshotSampler(tpe)
        return TrialSnapshotSampler(LocalSearchSampler(tpe, local_ratio=self.local_search,
                                                       learn_from_pruned=self.moves_learn_from_pruned, seed=seed))

    def describe(self) -> list[str]:
        """What a launch runs with, one line each: space, sampler and pruner, budget, constraints, data."""
        space = self.search_space()
        searched = f"; training searched: {', '.join(space.training_fields)}" if space.training_fields else ""
        fixed = "; training fixed: " + ", ".join(f"{k} {v}" for k, v in self.training.items()) if self.training else ""
        pruner = {"hyperband": f"hyperband (1 to {self.epochs} epochs, reduction factor {self.reduction_factor})",
                  "median": "median", "none": "none"}[self.pruner_name]
        limits = [f"{name} {getattr(self, name):,}" for name in LIMITS if getattr(self, name)]
        timeout = f"{self.timeout:g} s from the first trial" if self.timeout else "none"
        val = self.val_subset or f"{self.val_fraction:.0%} of the training images"
        sampler = self.sampler_name
        if sampler == "tpe" and self.local_search:
            learned = ", learning from pruned trials too" if self.moves_learn_from_pruned else ""
            sampler = f"tpe with local-search moves ({self.local_search:.0%} of trials{learned})"
        return [
            f"space: {space.name} ({space.kind}){searched}{fixed}",
            f"objective: {self.objective}; sampler: {sampler}, seed {self.seed}; pruner: {pruner}",
            f"budget: {self.trials} distinct architectures trained, up to {self.epochs} epochs each; timeout: {timeout}",
            f"constraints: {', '.join(limits) if limits else 'none'}",
            f"data: {self.dataset}; train {self.train_subset or 'all'}, validation {val}, "
            f"test {self.test_subset or 'the dataset test split, if any'}",
        ]

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """Hyperband as Zureick used it: one epoch is the smallest resource, `epochs` the largest."""
        import optuna

        name = self.pruner_name
        if name == "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=self.epochs, reduction_factor=self.reduction_factor
            )
        if name == "median":
            return optuna.pruners.MedianPruner(n_warmup_steps=1)
        return optuna.pruners.NopPruner()

    def train_settings(self, device: str, training: dict[str, Any] | None = None) -> TrainSettings:
        """How a trial trains: `training` (the study's fixed settings and those the space
        sampled for the trial, default the fixed ones) at the study's epochs and seed. Search
        trials skip the inference-latency measurement unless the study asks for it."""
        settings = {"measure_latency": False, **(self.training if training is None else training)}
        return parse_settings({**settings, "epochs": self.epochs, "seed": self.seed, "device": device})

    @property
    def needs_latency(self) -> bool:
        """Whether every sample's latency is measured before it trains (an objective or a limit)."""
        return self.objective == "accuracy,latency" or self.max_latency_ms is not None

    def constraint_violations(self, measured: dict[str, float]) -> dict[str, float]:
        """Relative excess over each limit set on a quantity in `measured` (keyed by the limit's
        name; <= 0 feasible), in Trial.set_constraint's convention."""
        return {name: measured[name] / getattr(self, name) - 1.0 for name in LIMITS
                if getattr(self, name) is not None and name in measured}

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def differences(self, other: StudyDefinition, ignore: tuple[str, ...] = BUDGET_FIELDS) -> list[str]:
        """Names of the fields whose values differ, for a resume that must not change the study."""
        mine, theirs = self.to_document(), other.to_document()
        return [k for k in mine if k not in ignore and mine[k] != theirs[k]]


def validate_definition(data: Any, source: str = "study definition") -> StudyDefinition:
    """Validate plain data, or raise ConfigError naming the field at fault."""
    return validate_model(StudyDefinition, data, source)


def read_definition_file(path: str | Path) -> dict[str, Any]:
    """A study YAML as plain data; relative dataset and space paths are taken from the file's folder."""
    path = Path(path)
    data = read_document_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return absolutize_paths(data, path.parent)


def absolutize_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make `folder:` datasets, data_dir and space files absolute, so workers started elsewhere
    (another working directory, a Ray actor) find the same files."""
    out = dict(data)
    dataset = out.get("dataset")
    if isinstance(dataset, str) and dataset.startswith("folder:") and dataset != "folder:":  # no path: refused
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
    data = study.user_attrs.get(DEFINITION_ATTR)
    if data is None:
        raise ConfigError(
            f"study '{study.study_name}' has no hybridnas definition; create it with `hybridnas launch`"
        )
    return validate_definition(data, f"study '{study.study_name}' definition")


def study_kind(study: optuna.Study) -> str | None:
    """SEARCH, RETRAIN, or None for a study hybridnas did not make (plain Optuna).

    Studies made before the kind was recorded are known by what they hold; a definition wins
    over a retrain plan, so a search study that an older `retrain` wrote into stays a search.
    """
    attrs = study.user_attrs
    kind = attrs.get(KIND_ATTR)
    if kind in (SEARCH, RETRAIN):
        return kind
    if DEFINITION_ATTR in attrs:
        return SEARCH
    if RETRAIN_ATTR in attrs:
        return RETRAIN
    return None


def kind_in_words(study: optuna.Study) -> str:
    """What a study is, for the one line that refuses to use it as something else."""
    kind = study_kind(study)
    if kind == SEARCH:
        return "a hybridnas search study"
    if kind == RETRAIN:
        plan = study.user_attrs.get(RETRAIN_ATTR)
        source = plan.get("source") if isinstance(plan, dict) else None
        return f"the retrain companion of study {source!r}" if source else "a retrain companion study"
    trials = len(study.get_trials(deepcopy=False))
    return f"an Optuna study with {trials} trial(s) and no hybridnas definition"


def check_study_name(name: str) -> str:
    """`name` if it can name a study: 1 to STUDY_NAME_MAX printable characters, not all blank.

    Checked where a name comes in (the CLI's --study, the Python API), before any storage is
    opened, so a name that cannot be printed or typed again never becomes a study.
    """
    if not isinstance(name, str) or not name.strip() or len(name) > STUDY_NAME_MAX or not name.isprintable():
        raise UsageError(f"study name {name!r}: a study name is 1 to {STUDY_NAME_MAX} printable characters "
                         "(not blank, no control characters or newlines)")
    return name
