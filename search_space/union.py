"""The union space: one define-by-run program over every knob of the super-model.

The YAML file (spaces/union.yaml) holds the ranges; this program decides which knobs exist
for a given trial so that every sampled config is valid by construction: widths come from a
list that every head count divides, multi-scale widths are multiples of 6, pools and strides
are only offered while the map is large enough, attention only on maps of at most
`max_attention_tokens` positions, a CLS head only after a transformer, aux heads only before
the last stage. A parameter's choices never depend on earlier answers (Optuna's samplers
require a fixed distribution per name); where they would, the knob gets its own name.
Which knobs a stage's block has follows its spec (hybridnas.models.block_specs).

`config_answer` is the program read backwards: the answer a config gives to each parameter,
kept beside the program so that every parameter name is written in this one module.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from hybridnas.models.block_specs import BLOCK_SPECS, BlockKind


class SuggestsParams(Protocol):
    """The part of optuna.Trial the program uses (a FixedTrial or a replay works too)."""

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False) -> float: ...


class IntRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: Annotated[int, Field(ge=0, le=64)]
    high: Annotated[int, Field(ge=1, le=64)]
    step: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


class FloatRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: Annotated[float, Field(ge=0.0, lt=1.0)]
    high: Annotated[float, Field(ge=0.0, lt=1.0)]
    step: Annotated[float, Field(gt=0.0)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


def _choices(item: Any, at_most: int = 64) -> Any:
    """A non-empty list of distinct choices of `item`."""
    return Annotated[list[item], Field(min_length=1, max_length=at_most)]


Width = Annotated[int, Field(ge=1, le=4096)]


class UnionKnobs(BaseModel):
    """The ranges of the union space, as written in a `kind: union` space file.

    Defaults are validated too: the default widths must fit the head counts a file sets.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)
    stems: _choices(Literal["none", "conv", "multiscale"]) = ["none", "conv", "multiscale"]
    stages: IntRange = IntRange(low=1, high=6)
    blocks: _choices(BlockKind) = list(get_args(BlockKind))
    # Before the widths, which are checked against them.
    heads: _choices(Annotated[int, Field(ge=1, le=64)]) = [1, 2, 4, 8]
    kernel_sizes: _choices(Literal[1, 3, 5, 7, 9, 11, 13, 15]) = [3, 5]
    kernel_sets: _choices(Annotated[str, Field(pattern=r"^(1|3|5|7|9|11|13|15)(-(1|3|5|7|9|11|13|15)){0,5}$")]) = [
        "3-5", "3-5-7"]
    widths: _choices(Width) = [16, 24, 32, 48, 64, 96, 128, 144, 192, 256, 384, 512]
    multiscale_widths: _choices(Width) = [24, 48, 96, 144, 192, 288, 384]
    depth: IntRange = IntRange(low=1, high=6)
    norms: _choices(Literal["post", "pre", "end"]) = ["post", "pre", "end"]
    activations: _choices(Literal["relu", "gelu"]) = ["relu", "gelu"]
    strides: _choices(Literal[1, 2, 3, 4]) = [1, 2]
    pools: _choices(Literal["none", "max", "avg"]) = ["none", "max", "avg"]
    pool_sizes: _choices(Literal[2, 3, 4]) = [2, 3, 4]
    dropout: FloatRange = FloatRange(low=0.0, high=0.5, step=0.05)
    se_reductions: _choices(Annotated[int, Field(ge=0, le=256)]) = [0, 4, 8, 16]
    attentions: _choices(Literal["none", "mhsa", "conv_mhsa", "transformer", "luong"]) = [
        "none", "mhsa", "conv_mhsa", "transformer", "luong"]
    max_attention_tokens: int = Field(256, ge=1, le=4096)
    attention_depth: IntRange = IntRange(low=1, high=3)
    mlp_ratios: _choices(Annotated[float, Field(gt=0.0, le=16.0)]) = [2.0, 4.0]
    attention_dropout: FloatRange = FloatRange(low=0.0, high=0.3, step=0.1)
    shortcuts: _choices(Literal["none", "avgpool"]) = ["none", "avgpool"]
    heads_out: _choices(Literal["avgpool", "flatten"]) = ["avgpool", "flatten"]
    max_flatten_hidden_features: int = Field(8192, ge=0)
    head_hidden_units: _choices(Annotated[int, Field(ge=0, le=8192)]) = [0, 256, 512, 1024]
    head_dropout: FloatRange = FloatRange(low=0.0, high=0.5, step=0.1)
    aux: bool = True
    aux_loss_weight: FloatRange = FloatRange(low=0.1, high=0.7, step=0.1)
    aux_dropout: float = Field(0.7, ge=0.0, lt=1.0)

    @field_validator("stages")
    @classmethod
    def _stages_fit_a_config(cls, stages: IntRange) -> IntRange:
        if not 1 <= stages.low <= stages.high <= 12:
            raise ValueError(f"{stages.low}..{stages.high} is not within the 1..12 stages a config may have")
        return stages

    @field_validator("widths")
    @classmethod
    def _widths_fit_heads(cls, widths: list[int], info: ValidationInfo) -> list[int]:
        for w in widths:
            bad = [h for h in info.data.get("heads", []) if w % h]
            if bad:
                raise ValueError(f"{w} is not divisible by heads {bad}; every width must fit every head count")
        return widths

    @field_validator("multiscale_widths")
    @classmethod
    def _multiscale_widths_fit_heads_and_kernel_sets(cls, widths: list[int], info: ValidationInfo) -> list[int]:
        if "heads" not in info.data or "kernel_sets" not in info.data:
            return widths  # the knob at fault is reported
        sets = {len(s.split("-")) for s in info.data["kernel_sets"]}
        for w in widths:
            bad = [h for h in info.data["heads"] if w % h] + [n for n in sets if w % n]
            if bad:
                raise ValueError(f"{w} is not divisible by {bad} (heads / kernel-set sizes)")
        return widths


def suggest_union(trial: SuggestsParams, k: UnionKnobs, *, num_classes: int, image_size: int) -> dict[str, Any]:
    """Sample one architecture (as config data) from the union space."""
    size = image_size
    stem: dict[str, Any] = {"kind": trial.suggest_categorical("stem", k.stems)}
    if stem["kind"] == "conv":
        stem["channels"] = trial.suggest_categorical("stem.channels", k.widths)
        stem["kernel_sizes"] = [trial.suggest_categorical("stem.kernel", k.kernel_sizes)]
        stem["activation"] = trial.suggest_categorical("stem.activation", k.activations)
    elif stem["kind"] == "multiscale":
        stem["channels"] = trial.suggest_categorical("stem.ms_channels", k.multiscale_widths)
        stem["kernel_sizes"] = _kernel_set(trial.suggest_categorical("stem.kernel_set", k.kernel_sets))
        stem["activation"] = trial.suggest_categorical("stem.activation", k.activations)
    channels = stem.get("channels", 3)

    n_stages = trial.suggest_int("n_stages", k.stages.low, k.stages.high, step=k.stages.step)
    stages = []
    for i in range(n_stages):
        stage, size = _suggest_stage(trial, k, f"s{i}.", first=i == 0 and stem["kind"] == "none",
                                     channels=channels, size=size)
        channels = stage["channels"] * BLOCK_SPECS[stage["block"]].expansion
        stages.append(stage)

    return {
        "input": {"image_size": image_size, "num_classes": num_classes},
        "stem": stem,
        "stages": stages,
        "head": _suggest_head(trial, k, stages[-1], channels * size * size),
        "aux": _suggest_aux(trial, k, stages),
    }


def _kernel_set(label: str) -> list[int]:
    return [int(x) for x in label.split("-")]


# The blocks whose norm the program chooses, and the parameter it asks under: each kind gets its
# own name because each builds other norms. A multi-scale embedding keeps the default norm.
_NORM_PARAMS = {"conv": "norm", "residual": "residual_norm"}


def _suggest_stage(
    trial: SuggestsParams, k: UnionKnobs, p: str, *, first: bool, channels: int, size: int
) -> tuple[dict[str, Any], int]:
    # A width-keeping block first (no stem) would keep the image's 3 channels.
    blocks = [b for b in k.blocks if not BLOCK_SPECS[b].keeps_width] if first else k.blocks
    block = trial.suggest_categorical(p + ("block_first" if first else "block"), blocks)
    spec = BLOCK_SPECS[block]
    stage: dict[str, Any] = {"block": block}
    if spec.keeps_width:
        stage["channels"] = channels
    elif spec.kernels == "parallel":
        stage["channels"] = trial.suggest_categorical(p + "ms_channels", k.multiscale_widths)
    else:
        stage["channels"] = trial.suggest_categorical(p + "channels", k.widths)

    if "depth" in spec.reads:
        stage["depth"] = trial.suggest_int(p + "depth", k.depth.low, k.depth.high, step=k.depth.step)
    if spec.kernels == "parallel":
        stage["kernel_sizes"] = _kernel_set(trial.suggest_categorical(p + "kernel_set", k.kernel_sets))
    elif "kernel_sizes" in spec.reads:
        stage["kernel_sizes"] = [trial.suggest_categorical(p + "kernel", k.kernel_sizes)]

    if block in _NORM_PARAMS:
        norms = [n for n in k.norms if n in spec.norms]
        stage["norm"] = trial.suggest_categorical(p + _NORM_PARAMS[block], norms)
    stage["activation"] = trial.suggest_categorical(p + "activation", k.activations)

    if spec.takes_stride and size >= 2:
        stage["stride"] = trial.suggest_categorical(p + "stride", k.strides)
        size = -(-size // stage["stride"])
    if size >= 2:
        kind = trial.suggest_categorical(p + "pool", k.pools)
        if kind != "none":
            pool_size = trial.suggest_categorical(p + "pool_size", k.pool_sizes) if size >= max(k.pool_sizes) else 2
            stage["pool"] = {"kind": kind, "size": pool_size}
            size //= pool_size
    stage["dropout"] = trial.suggest_float(p + "dropout", k.dropout.low, k.dropout.high, step=k.dropout.step)
    if stage["dropout"] > 0:
        stage["spatial_dropout"] = trial.suggest_categorical(p + "spatial_dropout", [False, True])
    if spec.takes_se:
        reduction = trial.suggest_categorical(p + "se", k.se_reductions)
        if reduction:
            stage["se_reduction"] = reduction
    if size * size <= k.max_attention_tokens:
        attention = _suggest_attention(trial, k, p, size)
        if attention is not None:
            stage["attention"] = attention
    shortcut = trial.suggest_categorical(p + "shortcut", k.shortcuts)
    if shortcut != "none":
        stage["shortcut"] = shortcut
    return stage, size


def _suggest_attention(trial: SuggestsParams, k: UnionKnobs, p: str, size: int) -> dict[str, Any] | None:
    kind = trial.suggest_categorical(p + "attention", k.attentions)
    if kind == "none":
        return None
    if kind == "luong":
        return {"kind": kind, "scope": trial.suggest_categorical(p + "scope", ["rows", "global"])}
    attention: dict[str, Any] = {"kind": kind, "heads": trial.suggest_categorical(p + "heads", k.heads)}
    if kind in ("conv_mhsa", "transformer"):
        attention["depth"] = trial.suggest_int(p + "att_depth", k.attention_depth.low, k.attention_depth.high)
        attention["mlp_ratio"] = trial.suggest_categorical(p + "mlp_ratio", k.mlp_ratios)
        attention["dropout"] = trial.suggest_float(
            p + "att_dropout", k.attention_dropout.low, k.attention_dropout.high, step=k.attention_dropout.step
        )
    if kind == "conv_mhsa" and size >= 2:
        attention["kv_stride"] = trial.suggest_categorical(p + "kv_stride", [1, 2])
    return attention


def _suggest_head(trial: SuggestsParams, k: UnionKnobs, last: dict[str, Any], flat_features: int) -> dict[str, Any]:
    after_transformer = last.get("attention", {}).get("kind") == "transformer"
    if after_transformer:
        kind = trial.suggest_categorical("head_cls", [*k.heads_out, "cls"])
    else:
        kind = trial.suggest_categorical("head", k.heads_out)
    head: dict[str, Any] = {"kind": kind}
    if kind == "cls":
        head["norm"] = "layernorm"
    if kind != "flatten" or flat_features <= k.max_flatten_hidden_features:
        hidden = trial.suggest_categorical("head_hidden", k.head_hidden_units)
        if hidden:
            head["hidden_units"] = [hidden]
    head["dropout"] = trial.suggest_float("head_dropout", k.head_dropout.low, k.head_dropout.high, step=k.head_dropout.step)
    return head


def _suggest_aux(trial: SuggestsParams, k: UnionKnobs, stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not k.aux:
        return []
    aux = []
    for i in range(len(stages) - 1):
        if not trial.suggest_categorical(f"aux{i}", [False, True]):
            continue
        head: dict[str, Any] = {
            "after_stage": i,
            "loss_weight": trial.suggest_float(
                f"aux{i}.loss_weight", k.aux_loss_weight.low, k.aux_loss_weight.high, step=k.aux_loss_weight.step
            ),
            "dropout": k.aux_dropout,
            "feeds_attention": False,
        }
        if any("se_reduction" in s for s in stages[i + 1 :]):
            head["feeds_attention"] = trial.suggest_categorical(f"aux{i}.feeds", [False, True])
        aux.append(head)
    return aux


def config_answer(name: str, cfg: dict[str, Any]) -> Any:
    """The answer config data gives to the program's parameter `name` (`suggest_union` backwards),
    for replaying a config, e.g. a paper preset, through the program."""
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
