"""Search spaces as data: YAML files that a define-by-run function turns into valid configs.

Two kinds of space file:
- `kind: union` -- ranges for the union program (search_space/union.py) over every knob;
- `kind: template` -- a config whose leaves may be distributions (search_space/template.py),
  used by the family spaces that mirror what each paper searched.
Both may have a `training:` section. Ranges and choices are written the same way in every
section (search_space/grammar.py); a loaded space holds its document in that grammar, the old
spelling rewritten, which is what a study stores and `format_space` prints.
Built-in spaces live in search_space/spaces/; copy one, edit it, pass the file's path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import ValidationError

from hybridnas.common import ConfigError, read_document_file
from hybridnas.models.canonical import architecture_key
from hybridnas.models.config import ArchConfig, parse_config
from hybridnas.models.presets import PRESETS, preset
from hybridnas.search_space.grammar import FORMS, edge_values, is_choice, is_range, normalize_entry
from hybridnas.search_space.template import match_template, suggest_template
from hybridnas.search_space.union import FloatRange, IntRange, UnionKnobs, suggest_union
from hybridnas.training.settings import SEARCHABLE_FIELDS, TrainSettings, parse_settings

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
            data = suggest_union(trial, UnionKnobs.model_validate(knob_values(self.document.get("knobs") or {})),
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
        return {field: suggest_template(trial, node, f"training.{field}", lists_are_choices=True)
                for field, node in (self.document.get("training") or {}).items()}

    def training_params(self, settings: TrainSettings) -> dict[str, Any]:
        """The `training:` params under which a trial trains with `settings` (lr and weight decay
        as resolved for its optimizer), field by field; a field whose value lies outside the
        section's range is left out, for the sampler to choose."""
        values = settings.resolved().model_dump()
        params: dict[str, Any] = {}
        for field, node in (self.document.get("training") or {}).items():
            params.update(match_template(node, values[field], f"training.{field}", lists_are_choices=True) or {})
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
    """Validate a space document (a file, or as stored in a study) and wrap it, its entries
    normalized to the one grammar: the old spelling and the new load to the same document."""
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
    try:
        document = {**document, **_normalized_sections(document, kind)}
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    _check_training(document.get("training"), source)
    if kind == "union":
        try:
            UnionKnobs.model_validate(knob_values(document["knobs"]))
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            msg = first["msg"].removeprefix("Value error, ")
            # model-level checks have no location; their messages start with the field name
            raise ConfigError(f"{source}: knobs.{loc}: {msg}" if loc else f"{source}: knobs.{msg}") from None
    return SearchSpace(name=name, kind=kind, document=document)


def _normalized_sections(document: dict[str, Any], kind: str) -> dict[str, Any]:
    """The space's `knobs:`, `template:` and `training:` in the one grammar (ConfigError names the entry)."""
    out: dict[str, Any] = {}
    training = document.get("training")
    if isinstance(training, dict):
        out["training"] = {field: normalize_entry(node, f"training.{field}", lists_are_choices=True)
                           for field, node in training.items()}
    if kind == "union":
        knobs = document.get("knobs") or {}
        if not isinstance(knobs, dict):
            raise ConfigError("knobs: expected a mapping of knob names to their values")
        out["knobs"] = {knob: _knob(knob, normalize_entry(node, f"knobs.{knob}", lists_are_choices=True))
                        for knob, node in knobs.items()}
    else:
        template = document.get("template")
        if not isinstance(template, dict) or "stages" not in template:
            raise ConfigError("template: a template space needs a config with stages")
        out["template"] = normalize_entry(template, "template")
    return out


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


def format_space(space: SearchSpace) -> str:
    """The space file in the one grammar, as YAML that loads to the same distributions
    (`hybridnas sample --space FILE --print-space`, to migrate a file in the old spelling)."""
    return yaml.dump(_flow_entries(space.document), Dumper=_SpaceDumper, sort_keys=False,
                     default_flow_style=None, width=110, allow_unicode=True)


def _check_training(section: Any, source: str) -> None:
    """A `training:` section maps searchable TrainSettings fields to a value, a choice or a
    range; every value it can produce must be a valid setting."""
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
