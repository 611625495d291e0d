"""The papers' own models as configs of the super-model.

Each preset defaults to the input size and class count its paper reports, and must land on the
paper's parameter and MAC figures; both live in `papers.py`. `preset(name, num_classes=...,
image_size=...)` overrides the input. Where a paper leaves a choice open, the choice and the
reason sit beside the preset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hybridnas.common import ConfigError
from hybridnas.models.papers import paper_model

if TYPE_CHECKING:
    from hybridnas.models.config import ArchConfig


def zureick() -> dict[str, Any]:
    """Zureick's Hyperband winner (Fig. 3.1), exact to the trainable parameter.

    Layers follow the Keras summary: Conv(64,3)-ReLU x2, BN, MaxPool 2, Attention, Conv(256,5)-ReLU
    x2, BN, MaxPool 3 (16 -> 5), Dropout .25, Flatten, Dense 512, Dropout .5, Dense.
    Choices: no dropout before the attention (the summary has none there, though the prose
    mentions one); the attention attends within rows, which is what Keras' Attention computes
    on a 4-D (B, H, W, C) tensor (its matmul batches over H), unscaled as Keras' default.
    """
    return {
        "name": "zureick",
        "stages": [
            {
                "block": "conv", "channels": 64, "depth": 2, "kernel_sizes": [3, 3], "norm": "end",
                "pool": {"kind": "max", "size": 2},
                "attention": {"kind": "luong", "scope": "rows"},
            },
            {
                "block": "conv", "channels": 256, "depth": 2, "kernel_sizes": [5, 5], "norm": "end",
                "pool": {"kind": "max", "size": 3}, "dropout": 0.25,
            },
        ],
        "head": {"kind": "flatten", "hidden_units": [512], "dropout": 0.5},
    }


def group18() -> dict[str, Any]:
    """Group18: two identical modules of {conv module x2, attention module, residual module}.

    The paper states no widths. Its conv module (Conv3x3-BN-ReLU, optional MaxPool) and
    residual module are those of the widely used CIFAR 'ResNet9' (64, 128+pool, res 128,
    256+pool, 512+pool, res 512, MaxPool 4, Linear), so we take those widths; the attention
    module works at the map's width (Linear embed C -> C) with 8 heads.
    """
    attention = {"kind": "mhsa", "heads": 8}
    return {
        "name": "group18",
        "stages": [
            {"block": "conv", "channels": 64},
            {"block": "conv", "channels": 128, "pool": {"kind": "max", "size": 2}, "attention": attention},
            {"block": "residual", "channels": 128},
            {"block": "conv", "channels": 256, "pool": {"kind": "max", "size": 2}},
            {"block": "conv", "channels": 512, "pool": {"kind": "max", "size": 2}, "attention": attention},
            {"block": "residual", "channels": 512, "pool": {"kind": "max", "size": 4}},
        ],
        "head": {"kind": "flatten"},
    }


def chae() -> dict[str, Any]:
    """CHAE, Table 1: four BN-Conv3x3-GELU-MaxPool blocks (32, 32, 64, 128), the 16x16x128 map
    -> 256 tokens + CLS + learned positions, 2 pre-LN layers (8 heads, D=128, MLP 256,
    dropout 0.2), LayerNorm on CLS, Dense to the classes.

    Choices: the tokens enter the encoder without a Linear projection (the paper reshapes the
    128-channel map and calls 128 the projection dimension); spatial dropout 0 in the conv
    blocks (the paper's gamma=0 there), 0.2 in the encoder.
    """
    def block(channels: int) -> dict[str, Any]:
        return {
            "block": "conv", "channels": channels, "norm": "pre", "activation": "gelu",
            "pool": {"kind": "max", "size": 2}, "spatial_dropout": True,
        }

    stages = [block(32), block(32), block(64), block(128)]
    stages[-1]["attention"] = {"kind": "transformer", "heads": 8, "depth": 2, "mlp_ratio": 2.0, "dropout": 0.2}
    return {
        "name": "chae",
        "stages": stages,
        "head": {"kind": "cls", "norm": "layernorm"},
    }


def samc() -> dict[str, Any]:
    """SAMC: per stage a multi-scale conv embedding (parallel 3/5/7 kernels, concat, avg-pool
    downsample, no positional encoding), CvT conv-projection MHSA layers, and the residual
    y = Encoder(ConvEmbed(x)) + avg_pool(x) (1x1-projected where widths change).

    The paper gives neither widths nor depths. We take CvT's three-stage layout scaled down
    until the count lands on the paper's for both its class counts: widths 48/96/144
    (divisible by the three branches), depths 1/2/3, heads 1/2/4, MLP ratio 2, K/V stride 2
    (CvT's), global-average head. The kernel set {3, 5, 7} is Inception's, which the paper
    cites as its model.
    """
    def stage(width: int, depth: int, heads: int, kv_stride: int) -> dict[str, Any]:
        return {
            "block": "multiscale", "channels": width, "kernel_sizes": [3, 5, 7], "activation": "gelu",
            "pool": {"kind": "avg", "size": 2}, "shortcut": "avgpool",
            "attention": {"kind": "conv_mhsa", "heads": heads, "depth": depth, "mlp_ratio": 2.0, "kv_stride": kv_stride},
        }

    return {
        "name": "samc",
        "stages": [stage(48, 1, 1, 2), stage(96, 2, 2, 2), stage(144, 3, 4, 2)],
        "head": {"kind": "avgpool"},
    }


_RESNET_DEPTHS = {34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3]), 101: ("bottleneck", [3, 4, 23, 3])}
_SE_R_LOSS_WEIGHTS = {34: (0.4, 0.4), 50: (0.3, 0.3), 101: (0.3, 0.2)}


def se_resnet(depth: int, aux: str | None = None, reduction: int = 8) -> dict[str, Any]:
    """SE-ResNet for CIFAR as the SE-R paper trains it: 3x3 stride-1 stem, no max-pool,
    stages of 64/128/256/512 (strides 1/2/2/2), SE with r=8 on every block.

    aux='A' adds the two GoogLeNet aux classifiers after stages 2 and 3 (SE-A); aux='R' also
    feeds their logits into the SE squeeze of every block of the later stages (SE-R): a stage
    receives the logits of the latest aux head before it (aux1 -> stage 3, aux2 -> stage 4),
    the reading under which Table 1's counts come out exactly. lossW per Table 3, aux dropout 0.7.
    """
    block, depths = _RESNET_DEPTHS[depth]
    stages = [
        {"block": block, "channels": width, "depth": n, "stride": stride, "se_reduction": reduction}
        for width, n, stride in zip([64, 128, 256, 512], depths, [1, 2, 2, 2])
    ]
    cfg: dict[str, Any] = {
        "name": f"se_{aux.lower()}_resnet{depth}" if aux else f"se_resnet{depth}",
        "stem": {"kind": "conv", "channels": 64, "kernel_sizes": [3]},
        "stages": stages,
        "head": {"kind": "avgpool"},
    }
    if aux:
        w1, w2 = _SE_R_LOSS_WEIGHTS[depth]
        cfg["aux"] = [
            {"after_stage": 1, "loss_weight": w1, "dropout": 0.7, "feeds_attention": aux == "R"},
            {"after_stage": 2, "loss_weight": w2, "dropout": 0.7, "feeds_attention": aux == "R"},
        ]
    return cfg


PRESETS: dict[str, Callable[[], dict[str, Any]]] = {
    "zureick": zureick,
    "group18": group18,
    "chae": chae,
    "samc": samc,
    **{f"se_resnet{d}": (lambda d=d: se_resnet(d)) for d in (34, 50, 101)},
    **{f"se_a_resnet{d}": (lambda d=d: se_resnet(d, "A")) for d in (34, 50, 101)},
    **{f"se_r_resnet{d}": (lambda d=d: se_resnet(d, "R")) for d in (34, 50, 101)},
}


def preset(name: str, *, num_classes: int | None = None, image_size: int | None = None) -> ArchConfig:
    """A paper's model as a validated config, at the paper's input unless told otherwise."""
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown name {name!r}; choose from {', '.join(PRESETS)}")
    paper = paper_model(name)
    size = paper.image_size if image_size is None else image_size
    classes = paper.num_classes if num_classes is None else num_classes
    from hybridnas.models.config import parse_config

    return parse_config({**PRESETS[name](), "input": {"image_size": size, "num_classes": classes}})
