"""The architecture config: the one contract between search, training, export and rebuild.

Every field is validated by pydantic; cross-field rules (heads dividing widths, pools that
would shrink a map below 1x1, aux heads after the last stage, ...) are checked by
`ArchConfig` as a whole and reported with the dotted path of the offending field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hybridnas.common import read_document_file, validate_model
from hybridnas.models.block_specs import BLOCK_SPECS, BlockKind, kinds_where

Activation = Literal["relu", "gelu"]
StemKind = Literal["none", "conv", "multiscale"]
AttentionKind = Literal["mhsa", "conv_mhsa", "transformer", "luong"]
PositiveInt = Annotated[int, Field(ge=1, le=8192)]
KernelSize = Annotated[int, Field(ge=1, le=15)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(_Strict):
    channels: PositiveInt = 3
    image_size: Annotated[int, Field(ge=8, le=1024)] = 32
    num_classes: Annotated[int, Field(ge=2, le=100_000)] = 10


class PoolConfig(_Strict):
    """Non-overlapping pooling (stride = size, floor), as Keras' and torch's defaults do."""

    kind: Literal["none", "max", "avg"] = "none"
    size: Annotated[int, Field(ge=2, le=8)] = 2


class StemConfig(_Strict):
    """What runs before the first stage.

    conv: `depth` Conv-Norm-Act layers (the ResNet CIFAR stem is depth 1, 64 channels, 3x3).
    multiscale: parallel convs of every kernel size, concatenated, then Norm-Act (SAMC).
    """

    kind: StemKind = "none"
    channels: PositiveInt = 64
    depth: Annotated[int, Field(ge=1, le=8)] = 1
    kernel_sizes: list[KernelSize] = Field(default_factory=lambda: [3], min_length=1, max_length=6)
    activation: Activation = "relu"
    pool: PoolConfig = PoolConfig()


class AttentionConfig(_Strict):
    """Attention applied to the feature map at the end of a stage.

    mhsa: Group18's module -- tokens HxW x C, Linear embed to `dim`, MHSA + residual, Linear back.
    conv_mhsa: SAMC/CvT transformer blocks whose Q/K/V come from depthwise-separable convs
        (K/V with stride `kv_stride`).
    transformer: CHAE's pre-LN encoder with a learnable CLS token and learned position embedding.
    luong: parameter-free dot-product attention with query = key = value = the feature map;
        `scope` says over which positions (Keras' Attention on a 4-D tensor attends within rows).
    """

    kind: AttentionKind
    heads: Annotated[int, Field(ge=1, le=64)] = 1
    dim: PositiveInt | None = None
    depth: Annotated[int, Field(ge=1, le=24)] = 1
    mlp_ratio: Annotated[float, Field(gt=0.0, le=16.0)] = 2.0
    dropout: Rate = 0.0
    kv_stride: Annotated[int, Field(ge=1, le=4)] = 1
    scope: Literal["rows", "global"] = "global"


class StageConfig(_Strict):
    """A run of identical blocks at one resolution, then optional pooling, dropout and attention.

    block conv: `depth` conv layers (Conv-Norm-Act for norm=post, Norm-Conv-Act for norm=pre,
        Conv-Act ... then one Norm for norm=end, Keras-style as Zureick's summary shows).
    block residual: `depth` Group18 residual modules (two conv modules + identity).
    block basic / bottleneck: ResNet blocks (a bottleneck widens its output), the first with
        `stride`; with `se_reduction` they are SE blocks.
    block multiscale: one SAMC conv embedding -- parallel convs of `kernel_sizes`, concatenated.
    Which fields each block reads, and what it takes, is its spec (hybridnas.models.block_specs).
    shortcut avgpool: stage output += 1x1-projected avg_pool(stage input) (SAMC's residual).
    """

    block: BlockKind
    channels: PositiveInt
    depth: Annotated[int, Field(ge=1, le=64)] = 1
    kernel_sizes: list[KernelSize] = Field(default_factory=lambda: [3], min_length=1, max_length=64)
    stride: Annotated[int, Field(ge=1, le=4)] = 1
    norm: Literal["post", "pre", "end", "none"] = "post"
    activation: Activation = "relu"
    pool: PoolConfig = PoolConfig()
    dropout: Rate = 0.0
    spatial_dropout: bool = False
    se_reduction: Annotated[int, Field(ge=1, le=256)] | None = None
    attention: AttentionConfig | None = None
    shortcut: Literal["none", "avgpool"] = "none"

    @property
    def out_channels(self) -> int:
        return self.channels * BLOCK_SPECS[self.block].expansion


class HeadConfig(_Strict):
    """Global average pool, the CLS token, or flatten; then dense layers and the classifier."""

    kind: Literal["avgpool", "cls", "flatten"] = "avgpool"
    norm: Literal["none", "layernorm"] = "none"
    hidden_units: list[PositiveInt] = Field(default_factory=list, max_length=4)
    activation: Activation = "relu"
    dropout: Rate = 0.0


class AuxConfig(_Strict):
    """A GoogLeNet-style auxiliary classifier after a stage (SE-R-ResNet).

    adaptive avg-pool to `pool_size`, 1x1 conv to `conv_channels` (+BN, ReLU), FC `hidden_units`,
    ReLU, dropout, FC to the classes. With `feeds_attention` its logits are concatenated into
    the SE squeeze vector of every SE block of the later stages, up to the next feeding aux
    head (SE-R); without, SE-A.
    """

    after_stage: Annotated[int, Field(ge=0)]
    loss_weight: Annotated[float, Field(ge=0.0, le=10.0)] = 0.3
    dropout: Rate = 0.7
    pool_size: Annotated[int, Field(ge=1, le=8)] = 4
    conv_channels: PositiveInt = 128
    hidden_units: PositiveInt = 1024
    feeds_attention: bool = True


class ArchConfig(_Strict):
    """A whole model. `build(config)` turns it into an nn.Module, deterministically."""

    name: Annotated[str, Field(max_length=200)] | None = None
    input: InputConfig = InputConfig()
    stem: StemConfig = StemConfig()
    stages: list[StageConfig] = Field(min_length=1, max_length=12)
    head: HeadConfig = HeadConfig()
    aux: list[AuxConfig] = Field(default_factory=list, max_length=11)

    @model_validator(mode="after")
    def _check_consistency(self) -> ArchConfig:
        problems = _trace_shapes(self)[0]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def feature_shapes(self) -> list[tuple[int, int]]:
        """(channels, spatial size) after each stage; the config is square-input throughout."""
        return _trace_shapes(self)[1]

    def with_input(self, *, num_classes: int | None = None, image_size: int | None = None) -> ArchConfig:
        """The same architecture for another class count or input size, re-validated."""
        data = self.model_dump()
        if num_classes is not None:
            data["input"]["num_classes"] = num_classes
        if image_size is not None:
            data["input"]["image_size"] = image_size
        return parse_config(data)


_STRIDED = "/".join(kinds_where(lambda spec: spec.takes_stride))
_END_NORMED = "/".join(kinds_where(lambda spec: "end" in spec.norms))


def _pooled(size: int, pool: PoolConfig) -> int:
    return size if pool.kind == "none" else size // pool.size


def _trace_shapes(cfg: ArchConfig) -> tuple[list[str], list[tuple[int, int]]]:
    """Walk the network's shapes; return problems (as 'field: reason') and per-stage shapes."""
    problems: list[str] = []
    shapes: list[tuple[int, int]] = []
    channels, size = cfg.input.channels, cfg.input.image_size
    stem = cfg.stem
    if stem.kind != "none":
        if stem.kind == "multiscale" and stem.channels % len(stem.kernel_sizes):
            problems.append(
                f"stem.channels: {stem.channels} is not divisible by the "
                f"{len(stem.kernel_sizes)} kernel sizes"
            )
        channels, size = stem.channels, _pooled(size, stem.pool)
        if size < 1:
            problems.append(f"stem.pool: size {stem.pool.size} shrinks the map below 1x1")
    for i, stage in enumerate(cfg.stages):
        where = f"stages.{i}"
        spec = BLOCK_SPECS[stage.block]
        if any(k % 2 == 0 for k in stage.kernel_sizes):
            problems.append(f"{where}.kernel_sizes: {stage.kernel_sizes} must all be odd ('same' padding)")
        if spec.kernels == "per_layer" and len(stage.kernel_sizes) not in (1, stage.depth):
            problems.append(f"{where}.kernel_sizes: give 1 or depth={stage.depth} sizes, not {len(stage.kernel_sizes)}")
        if spec.kernels == "parallel" and stage.channels % len(stage.kernel_sizes):
            problems.append(
                f"{where}.channels: {stage.channels} is not divisible by the {len(stage.kernel_sizes)} kernel sizes"
            )
        if "depth" not in spec.reads and stage.depth != 1:
            problems.append(f"{where}.depth: a {spec.noun} has depth 1, got {stage.depth}")
        if stage.se_reduction is not None:
            if not spec.takes_se:
                problems.append(f"{where}.se_reduction: SE needs a residual block, not block={stage.block!r}")
            elif stage.out_channels // stage.se_reduction < 1:
                problems.append(
                    f"{where}.se_reduction: {stage.se_reduction} leaves no hidden unit for "
                    f"{stage.out_channels} channels"
                )
        if spec.keeps_width and stage.channels != channels:
            problems.append(f"{where}.channels: a {spec.noun} keeps its input width ({channels}), got {stage.channels}")
        if stage.norm == "end" and "end" not in spec.norms:
            problems.append(f"{where}.norm: 'end' applies to {_END_NORMED} blocks only, not block={stage.block!r}")
        if stage.stride > 1 and not spec.takes_stride:
            problems.append(f"{where}.stride: only {_STRIDED} blocks take a stride")
        size = -(-size // stage.stride)
        size = _pooled(size, stage.pool)
        if size < 1:
            problems.append(f"{where}.pool: size {stage.pool.size} shrinks the map below 1x1")
            size = 1
        channels = stage.out_channels
        if stage.attention is not None:
            problems.extend(_attention_problems(f"{where}.attention", stage.attention, channels, size))
        shapes.append((channels, size))

    last = len(cfg.stages) - 1
    last_attention = cfg.stages[-1].attention
    if cfg.head.kind == "cls" and (last_attention is None or last_attention.kind != "transformer"):
        problems.append("head.kind: 'cls' needs a transformer attention on the last stage")
    for j, aux in enumerate(cfg.aux):
        if aux.after_stage >= last:
            problems.append(
                f"aux.{j}.after_stage: {aux.after_stage} is not before the last stage ({last}); "
                "an aux head after the last stage predicts nothing new"
            )
        elif aux.feeds_attention and not any(
            s.se_reduction is not None for s in cfg.stages[aux.after_stage + 1 :]
        ):
            problems.append(f"aux.{j}.feeds_attention: no SE block after stage {aux.after_stage} to feed")
    positions = [a.after_stage for a in cfg.aux]
    if len(set(positions)) != len(positions):
        problems.append(f"aux: two aux heads after the same stage ({positions})")
    return problems, shapes


def _attention_problems(where: str, att: AttentionConfig, channels: int, size: int) -> list[str]:
    problems = []
    if att.kind == "luong":
        return problems
    dim = att.dim or channels
    if att.kind == "conv_mhsa" and att.dim not in (None, channels):
        problems.append(f"{where}.dim: conv_mhsa works at the stage width ({channels}); leave dim unset")
    if dim % att.heads:
        problems.append(f"{where}.heads: {att.heads} heads do not divide width {dim}")
    if att.kind == "conv_mhsa" and att.kv_stride > size:
        problems.append(f"{where}.kv_stride: {att.kv_stride} is larger than the {size}x{size} map")
    return problems


def parse_config(data: Any, source: str = "config") -> ArchConfig:
    """Validate plain data into an ArchConfig, or raise ConfigError naming the field."""
    return validate_model(ArchConfig, data, source)


def load_config(path: str | Path) -> ArchConfig:
    """Read a YAML or JSON config file (JSON is YAML, so one safe loader reads both).

    A file `export` wrote also holds the trial's `training:` section, which says how to train
    the architecture, not what it is; it is left out here (hybridnas.training.documents reads it).
    """
    data = read_document_file(path)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "training"}
    return parse_config(data, source=str(path))


def dump_config(cfg: ArchConfig, path: str | Path | None = None, fmt: str | None = None) -> str:
    """Serialise losslessly; the format follows the suffix (.json) or `fmt`, YAML otherwise."""
    data = cfg.model_dump(mode="json")
    fmt = fmt or ("json" if path is not None and str(path).endswith(".json") else "yaml")
    text = json.dumps(data, indent=2) + "\n" if fmt == "json" else yaml.safe_dump(data, sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text
