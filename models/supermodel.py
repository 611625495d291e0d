"""The super-model: `build(config)` turns any valid ArchConfig into an nn.Module."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from hybridnas.models.attention import build_attention
from hybridnas.models.blocks import BLOCKS, STEMS, PooledShortcut, activation, pool
from hybridnas.models.config import ArchConfig, AuxConfig, HeadConfig, StageConfig


class HybridOutput(NamedTuple):
    """What a model with aux heads returns in training mode (as torchvision's GoogLeNet does)."""

    logits: torch.Tensor
    aux_logits: list[torch.Tensor]


class Stage(nn.Module):
    """Blocks -> pool -> dropout -> attention, plus SAMC's pooled shortcut around all of it."""

    def __init__(self, cfg: StageConfig, in_ch: int, out_size: int, se_extra: int) -> None:
        super().__init__()
        out_ch = cfg.out_channels
        self.blocks = nn.ModuleList(BLOCKS[cfg.block](cfg, in_ch, se_extra))
        self.pool = pool(cfg.pool)
        self.dropout = (nn.Dropout2d if cfg.spatial_dropout else nn.Dropout)(cfg.dropout) if cfg.dropout else nn.Identity()
        self.attention = build_attention(cfg.attention, out_ch, out_size)
        self.shortcut = PooledShortcut(in_ch, out_ch, out_size) if cfg.shortcut == "avgpool" else None

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the stage's map and, after a CLS transformer, its CLS token."""
        out = x
        for block in self.blocks:
            out = block(out, extra)
        out, cls = self.attention.encode(self.dropout(self.pool(out)))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return out, cls


class Head(nn.Module):
    def __init__(self, cfg: HeadConfig, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.kind = cfg.kind
        self.norm = nn.LayerNorm(in_features) if cfg.norm == "layernorm" else nn.Identity()
        layers: list[nn.Module] = []
        width = in_features
        for units in cfg.hidden_units:
            layers += [nn.Linear(width, units), activation(cfg.activation)]
            width = units
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        layers.append(nn.Linear(width, num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cls: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "cls":
            feats = cls
        elif self.kind == "flatten":
            feats = x.flatten(1)
        else:
            feats = x.mean(dim=(2, 3))
        return self.mlp(self.norm(feats))


class AuxClassifier(nn.Sequential):
    """GoogLeNet's auxiliary head: avg-pool, 1x1 conv (+BN, ReLU), FC, ReLU, dropout, FC."""

    def __init__(self, cfg: AuxConfig, in_ch: int, num_classes: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(cfg.pool_size),
            nn.Conv2d(in_ch, cfg.conv_channels, 1, bias=False),
            nn.BatchNorm2d(cfg.conv_channels),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(cfg.conv_channels * cfg.pool_size**2, cfg.hidden_units),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden_units, num_classes),
        )


def fed_aux(cfg: ArchConfig, stage_index: int) -> list[int]:
    """Index into cfg.aux of the aux head whose logits feed the SE blocks of `stage_index`.

    A stage takes the latest feeding aux head before it (SE-R: aux1 -> stage 3, aux2 -> stage 4);
    this rule reproduces the paper's Table 1 counts exactly, "every earlier head" would not.
    """
    before = [(a.after_stage, j) for j, a in enumerate(cfg.aux) if a.feeds_attention and a.after_stage < stage_index]
    return [max(before)[1]] if before else []


class HybridNet(nn.Module):
    """Stem -> stages (attention inside) -> head, with optional aux heads between stages.

    `forward` returns the main logits, or a HybridOutput with the aux logits too while
    training a model that has aux heads. In eval mode aux heads run only if they feed SE.
    """

    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.config = cfg
        n_cls = cfg.input.num_classes
        self.stem = STEMS[cfg.stem.kind](cfg.stem, cfg.input.channels)
        in_ch = cfg.stem.channels if cfg.stem.kind != "none" else cfg.input.channels
        shapes = cfg.feature_shapes()
        self.stages = nn.ModuleList()
        for i, (stage_cfg, (out_ch, size)) in enumerate(zip(cfg.stages, shapes)):
            extra = n_cls * len(fed_aux(cfg, i)) if stage_cfg.se_reduction else 0
            self.stages.append(Stage(stage_cfg, in_ch, size, extra))
            in_ch = out_ch
        self.aux_heads = nn.ModuleList(AuxClassifier(a, shapes[a.after_stage][0], n_cls) for a in cfg.aux)
        self._aux_after = {a.after_stage: j for j, a in enumerate(cfg.aux)}
        self._feeds = [fed_aux(cfg, i) for i in range(len(cfg.stages))]
        self._aux_needed_in_eval = any(a.feeds_attention for a in cfg.aux)
        channels, size = shapes[-1]
        head_in = {"avgpool": channels, "flatten": channels * size * size}.get(cfg.head.kind)
        if cfg.head.kind == "cls":
            head_in = cfg.stages[-1].attention.dim or channels
        self.head = Head(cfg.head, head_in, n_cls)

    def forward(self, x: torch.Tensor) -> torch.Tensor | HybridOutput:
        run_aux = bool(self.aux_heads) and (self.training or self._aux_needed_in_eval)
        aux_out: dict[int, torch.Tensor] = {}
        x = self.stem(x)
        cls = None
        for i, stage in enumerate(self.stages):
            extra = torch.cat([aux_out[j] for j in self._feeds[i]], dim=1) if self._feeds[i] and run_aux else None
            x, cls = stage(x, extra)
            if run_aux and i in self._aux_after:
                j = self._aux_after[i]
                aux_out[j] = self.aux_heads[j](x)
        logits = self.head(x, cls)
        if self.training and self.aux_heads:
            return HybridOutput(logits, [aux_out[j] for j in range(len(self.aux_heads))])
        return logits


def build(config: ArchConfig) -> HybridNet:
    """Build the model a config describes; same config, same modules and state-dict keys."""
    return HybridNet(config)
