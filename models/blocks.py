"""Convolutional building blocks of the super-model, one idea per module.

Every stage block is called as `block(x, extra)`: `extra` is what SE-R feeds into the SE squeeze
(the aux logits), None otherwise; blocks without SE accept it and ignore it. `STEMS` and `BLOCKS`
map each `StemConfig.kind` and `StageConfig.block` to its builder; what each block kind is
(its module class, expansion, fields) is its spec in hybridnas.models.block_specs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hybridnas.models.block_specs import BLOCK_SPECS
from hybridnas.models.config import BlockKind, PoolConfig, StageConfig, StemConfig, StemKind
from hybridnas.models.registry import Registry


def activation(name: str) -> nn.Module:
    return nn.GELU() if name == "gelu" else nn.ReLU(inplace=True)


def pool(cfg: PoolConfig) -> nn.Module:
    if cfg.kind == "max":
        return nn.MaxPool2d(cfg.size)
    if cfg.kind == "avg":
        return nn.AvgPool2d(cfg.size)
    return nn.Identity()


def conv_norm_act(
    in_ch: int, out_ch: int, kernel: int, act: str, norm: str = "post", stride: int = 1
) -> nn.Sequential:
    """Conv-BN-Act (post), BN-Conv-Act (pre, CHAE) or Conv-Act (none / Keras 'end' layers)."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)
    if norm == "pre":
        return nn.Sequential(nn.BatchNorm2d(in_ch), conv, activation(act))
    if norm == "post":
        return nn.Sequential(conv, nn.BatchNorm2d(out_ch), activation(act))
    return nn.Sequential(conv, activation(act))


class ConvStack(nn.Sequential):
    """`depth` conv layers; with norm='end' one BatchNorm follows the last activation (Zureick)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_sizes: list[int], depth: int, act: str, norm: str, stride: int = 1
    ) -> None:
        kernels = kernel_sizes * depth if len(kernel_sizes) == 1 else kernel_sizes
        layer_norm = "none" if norm == "end" else norm
        layers: list[nn.Module] = []
        for i, k in enumerate(kernels):
            layers.append(conv_norm_act(in_ch if i == 0 else out_ch, out_ch, k, act, layer_norm, stride if i == 0 else 1))
        if norm == "end":
            layers.append(nn.BatchNorm2d(out_ch))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


class MultiScaleConv(nn.Module):
    """Parallel convs of several kernel sizes, concatenated on channels (SAMC's embedding)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_sizes: list[int], act: str, norm: str = "post") -> None:
        super().__init__()
        branch_ch = out_ch // len(kernel_sizes)
        self.branches = nn.ModuleList(nn.Conv2d(in_ch, branch_ch, k, padding=k // 2) for k in kernel_sizes)
        self.norm = nn.BatchNorm2d(out_ch) if norm != "none" else nn.Identity()
        self.act = activation(act)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.act(self.norm(torch.cat([b(x) for b in self.branches], dim=1)))


class SqueezeExcite(nn.Module):
    """SE channel attention; `extra` inputs (aux logits, SE-R) join the squeeze vector: [T, z]."""

    def __init__(self, channels: int, reduction: int, extra: int = 0) -> None:
        super().__init__()
        hidden = channels // reduction
        self.fc1 = nn.Linear(channels + extra, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        z = x.mean(dim=(2, 3))
        if extra is not None:
            z = torch.cat([extra.to(z.dtype), z], dim=1)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))
        return x * s[:, :, None, None]


class ResidualBlock(nn.Module):
    """ResNet basic (two 3x3) or bottleneck (1x1-3x3-1x1, widening by its spec's expansion) block
    with optional SE.

    Follows the CIFAR SE-ResNet the SE-R paper trained: every conv is Conv-BN-ReLU (the last
    one too), SE rescales the residual branch, then the shortcut is added and ReLU applied.
    """

    def __init__(
        self, kind: str, in_ch: int, width: int, stride: int, act: str, se_reduction: int | None, se_extra: int
    ) -> None:
        super().__init__()
        out_ch = width * BLOCK_SPECS[kind].expansion
        if kind == "basic":
            self.residual = nn.Sequential(
                conv_norm_act(in_ch, width, 3, act, stride=stride), conv_norm_act(width, out_ch, 3, act)
            )
        else:
            self.residual = nn.Sequential(
                conv_norm_act(in_ch, width, 1, act),
                conv_norm_act(width, width, 3, act, stride=stride),
                conv_norm_act(width, out_ch, 1, act),
            )
        self.se = SqueezeExcite(out_ch, se_reduction, se_extra) if se_reduction else None
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride), nn.BatchNorm2d(out_ch))
        self.act = activation(act)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        out = self.residual(x)
        if self.se is not None:
            out = self.se(out, extra)
        return self.act(out + self.shortcut(x))


class ConvResidualModule(nn.Module):
    """Group18's residual module: two conv modules (Conv-BN-Act) plus identity, optional SE."""

    def __init__(self, channels: int, kernel: int, act: str, norm: str, se_reduction: int | None, se_extra: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_norm_act(channels, channels, kernel, act, norm), conv_norm_act(channels, channels, kernel, act, norm)
        )
        self.se = SqueezeExcite(channels, se_reduction, se_extra) if se_reduction else None

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        out = self.body(x)
        if self.se is not None:
            out = self.se(out, extra)
        return out + x


class PooledShortcut(nn.Module):
    """SAMC's residual: avg_pool(stage input) to the output size, 1x1-projected when widths differ."""

    def __init__(self, in_ch: int, out_ch: int, out_size: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(out_size)
        self.proj = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


StemBuilder = Callable[[StemConfig, int], nn.Module]
BlockBuilder = Callable[[StageConfig, int, int], list[nn.Module]]

STEMS: Registry[StemBuilder] = Registry("stem", StemKind)
BLOCKS: Registry[BlockBuilder] = Registry("block", BlockKind)


@STEMS.register("none")
def _no_stem(cfg: StemConfig, in_ch: int) -> nn.Module:
    return nn.Identity()


@STEMS.register("conv")
def _conv_stem(cfg: StemConfig, in_ch: int) -> nn.Module:
    body = ConvStack(in_ch, cfg.channels, cfg.kernel_sizes[:1], cfg.depth, cfg.activation, "post")
    return nn.Sequential(body, pool(cfg.pool))


@STEMS.register("multiscale")
def _multiscale_stem(cfg: StemConfig, in_ch: int) -> nn.Module:
    body = MultiScaleConv(in_ch, cfg.channels, cfg.kernel_sizes, cfg.activation)
    return nn.Sequential(body, pool(cfg.pool))


@BLOCKS.register("conv")
def _conv_blocks(cfg: StageConfig, in_ch: int, se_extra: int) -> list[nn.Module]:
    return [ConvStack(in_ch, cfg.out_channels, cfg.kernel_sizes, cfg.depth, cfg.activation, cfg.norm, cfg.stride)]


@BLOCKS.register("multiscale")
def _multiscale_blocks(cfg: StageConfig, in_ch: int, se_extra: int) -> list[nn.Module]:
    return [MultiScaleConv(in_ch, cfg.out_channels, cfg.kernel_sizes, cfg.activation, cfg.norm)]


@BLOCKS.register("residual")
def _residual_modules(cfg: StageConfig, in_ch: int, se_extra: int) -> list[nn.Module]:
    return [
        ConvResidualModule(cfg.out_channels, cfg.kernel_sizes[0], cfg.activation, cfg.norm, cfg.se_reduction, se_extra)
        for _ in range(cfg.depth)
    ]


@BLOCKS.register("basic", "bottleneck")
def _resnet_blocks(cfg: StageConfig, in_ch: int, se_extra: int) -> list[nn.Module]:
    """The first block takes the stage's stride and input width, as torchvision's ResNet does."""
    return [
        ResidualBlock(
            cfg.block,
            in_ch if i == 0 else cfg.out_channels,
            cfg.channels,
            cfg.stride if i == 0 else 1,
            cfg.activation,
            cfg.se_reduction,
            se_extra,
        )
        for i in range(cfg.depth)
    ]


STEMS.check()
BLOCKS.check()
