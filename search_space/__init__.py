"""Search spaces as data: YAML files that a define-by-run function turns into valid configs.

Two kinds of space file:
- `kind: union` -- ranges for the union program (search_space/union.py) over every knob;
- `kind: template` -- a config whose leaves may be distributions (search_space/template.py),
  used by the family spaces that mirror what each paper searched.
Built-in spaces live in search_space/spaces/; copy one, edit it, pass the file's path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hybridnas.common import ConfigError, read_document_file
from hybridnas.models.canonical import architecture_key
from hybridnas.models.config import ArchConfig, parse_config
from hybridnas.models.presets import PRESETS, preset
from hybridnas.search_space.template import check_template, is_distribution, match_template, suggest_template
from hybridnas.training.settings import SEARCHABLE_FIELDS, TrainSettings, parse_settings
from hybridnas.search_space.union import UnionKnobs, suggest_union

SPACES_DIR = Path(__file__).parent / "spaces"
BUILTIN_SPACES = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class SearchSpace:
    """A loaded space: its name, kind and the document it came from (stored in each study)."""

    name: str
    kind: str
    document: dict[str, Any]

    def suggest(self, trial: Any, *, num_classes: int, image_size: int) -> ArchConfig:
        """Define-by-run: ask the trial for every knob this architecture needs."""
        if self.kind == "union":
            data = suggest_union(trial, UnionKnobs.model_validate(self.document.get("knobs", {})),
                                 num_classes=num_classes, image_size=image_size)
        else:
            data = suggest_template(trial, self.document["template"])
            data["input"] = {**data.get("input", {}), "num_classes": num_classes, "image_size": image_size}
        data["name"] = f"{self.name}-sample"
        return parse_config(data)

    @property
    def training_fields(self) -> tuple[str, ...]:
        """The training settings this space searches (its optional `training:` section)."""
        return tuple(self.document.get("training") or {})

    def suggest_training(self, trial: Any) -> dict[str, Any]:
        """The trial's training settings from the `training:` section; {} without one."""
        return suggest_template(trial, self.document.get("training") or {}, "training")

    def training_params(self, settings: TrainSettings) -> dict[str, Any]:
        """The `training:` params under which a trial trains with `settings` (lr and weight decay
        as resolved for its optimizer), field by field; a field whose value lies outside the
        section's range is left out, for the sampler to choose."""
        values = settings.resolved().model_dump()
        params: dict[str, Any] = {}
        for field, node in (self.document.get("training") or {}).items():
            params.update(match_template(node, values[field], f"training.{field}") or {})
        return params

    def warm_start(self, *, num_classes: int, image_size: int) -> list[tuple[str, dict[str, Any]]]:
        """(preset, params) for each paper preset this space can express, for enqueue_trial."""
        found = []
        for name in PRESETS:
            target = preset(name).with_input(num_classes=num_classes, image_size=image_size)
            params = self._params_for(target)
            if params is not None:
                found.append((name, params))
        return found

    def _params_for(self, target: ArchConfig) -> dict[str, Any] | None:
        if self.kind == "union":
            replay = _ReplayTrial(target)
            try:
                produced = self.suggest(replay, num_classes=target.input.num_classes,
                                        image_size=target.input.image_size)
            except (_NoFit, ConfigError):
                return None
            params = replay.params
        else:
            params = match_template(self.document["template"], target.model_dump(mode="json"))
            if params is None:
                return None
            from optuna.trial import FixedTrial

            try:
                produced = self.suggest(FixedTrial(params), num_classes=target.input.num_classes,
                                        image_size=target.input.image_size)
            except ConfigError:
                return None
        return params if same_architecture(produced, target) else None


def same_architecture(a: ArchConfig, b: ArchConfig) -> bool:
    """Equal up to the name and to spellings of the same model (see hybridnas.models.canonical)."""
    return architecture_key(a) == architecture_key(b)


class _NoFit(Exception):
    pass


class _ReplayTrial:
    """Answers the union program's questions from a target config, to find its params."""

    def __init__(self, target: ArchConfig) -> None:
        self.target = target.model_dump(mode="json")
        self.params: dict[str, Any] = {}

    def _answer(self, name: str) -> Any:
        value = _union_value(name, self.target)
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


def _union_value(name: str, cfg: dict[str, Any]) -> Any:
    """The answer a config gives to one union-program question (inverse of suggest_union)."""
    stem, head = cfg["stem"], cfg["head"]
    flat = {
        "stem": stem["kind"], "stem.channels": stem["channels"], "stem.ms_channels": stem["channels"],
        "stem.kernel": stem["kernel_sizes"][0], "stem.kernel_set": "-".join(map(str, stem["kernel_sizes"])),
        "stem.activation": stem["activation"], "n_stages": len(cfg["stages"]),
        "head": head["kind"], "head_cls": head["kind"],
        "head_hidden": head["hidden_units"][0] if head["hidden_units"] else 0, "head_dropout": head["dropout"],
    }
    if name in flat:
        return flat[name]
    prefix, _, field = name.partition(".")
    if prefix.startswith("aux"):
        after = int(prefix[3:])
        aux = next((a for a in cfg["aux"] if a["after_stage"] == after), None)
        if not field:
            return aux is not None
        return {"loss_weight": aux["loss_weight"], "feeds": aux["feeds_attention"]}[field]
    stage = cfg["stages"][int(prefix[1:])]
    attention = stage["attention"] or {}
    by_field = {
        "block": stage["block"], "block_first": stage["block"], "channels": stage["channels"],
        "ms_channels": stage["channels"], "depth": stage["depth"], "kernel": stage["kernel_sizes"][0],
        "kernel_set": "-".join(map(str, stage["kernel_sizes"])), "norm": stage["norm"],
        "residual_norm": stage["norm"], "activation": stage["activation"], "stride": stage["stride"],
        "pool": stage["pool"]["kind"], "pool_size": stage["pool"]["size"], "dropout": stage["dropout"],
        "spatial_dropout": stage["spatial_dropout"], "se": stage["se_reduction"] or 0,
        "attention": attention.get("kind", "none"), "scope": attention.get("scope"),
        "heads": attention.get("heads"), "att_depth": attention.get("depth"),
        "mlp_ratio": attention.get("mlp_ratio"), "att_dropout": attention.get("dropout"),
        "kv_stride": attention.get("kv_stride"), "shortcut": stage["shortcut"],
    }
    return by_field[field]


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A built-in space by name, or a space file by path; errors name the field at fault."""
    text = str(name_or_path)
    path = SPACES_DIR / f"{text}.yaml" if text in BUILTIN_SPACES else Path(text)
    if not path.is_file():
        raise ConfigError(f"space: {text!r} is neither a built-in space ({', '.join(BUILTIN_SPACES)}) nor a file")
    return space_from_document(read_document_file(path), source=str(path))


def space_from_document(document: Any, source: str = "space") -> SearchSpace:
    """Validate a space document (as stored in a study) and wrap it."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    kind = document.get("kind")
    name = document.get("name")
    if kind not in ("union", "template"):
        raise ConfigError(f"{source}: kind: must be 'union' or 'template', got {kind!r}")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: name: a space needs a name")
    unknown = set(document) - {"kind", "name", "description", "knobs", "template", "training"}
    if unknown:
        raise ConfigError(f"{source}: unknown keys {sorted(unknown)}")
    _check_training(document.get("training"), source)
    if kind == "union":
        try:
            UnionKnobs.model_validate(document.get("knobs") or {})
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            msg = first["msg"].removeprefix("Value error, ")
            # model-level checks have no location; their messages start with the field name
            raise ConfigError(f"{source}: knobs.{loc}: {msg}" if loc else f"{source}: knobs.{msg}") from None
        document = {**document, "knobs": document.get("knobs") or {}}
    else:
        template = document.get("template")
        if not isinstance(template, dict) or "stages" not in template:
            raise ConfigError(f"{source}: template: a template space needs a config with stages")
        problems = check_template(template)
        if problems:
            raise ConfigError(f"{source}: template.{problems[0]}")
    return SearchSpace(name=name, kind=kind, document=document)


def _check_training(section: Any, source: str) -> None:
    """A `training:` section maps searchable TrainSettings fields to a value or a distribution
    (the template syntax); every value it can produce must be a valid setting."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: training: expected a mapping of training settings")
    for field, leaf in section.items():
        where = f"{source}: training.{field}"
        if field not in SEARCHABLE_FIELDS:
            raise ConfigError(f"{where}: not a searchable training setting; choose from {', '.join(SEARCHABLE_FIELDS)}")
        problems = check_template(leaf, f"training.{field}")
        if problems:
            raise ConfigError(f"{source}: {problems[0]}")
        for value in _leaf_values(leaf):
            try:
                parse_settings({field: value})
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None


def _leaf_values(leaf: Any) -> list[Any]:
    """The values a leaf can take at its edges: itself, each choice, or a range's two ends."""
    if not is_distribution(leaf):
        return [leaf]
    if "choice" in leaf:
        return [v for option in leaf["choice"] for v in _leaf_values(option)]
    return list(leaf["int"] if "int" in leaf else leaf["float"])


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
