"""What each kind of stage block is, written once: the facts every other part reads.

Validation (config.py), the canonical form (canonical.py), the modules (blocks.py), the union
space (search_space/union.py) and the reports treat block kinds differently only through these
specs, so adding a kind means one `BlockKind` value, one spec here and one builder in blocks.py
(both registries fail at import if either is missing).

Torch-free on purpose: the config is validated, and the CLI starts, without importing torch;
a spec names its module class, which `module_class` imports on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hybridnas.models.registry import Registry

if TYPE_CHECKING:
    from torch import nn

BlockKind = Literal["conv", "residual", "basic", "bottleneck", "multiscale"]
# How a block's convs take their sizes from `kernel_sizes`: one per layer (or one for all),
# only the first, all of them side by side, or not at all (the block fixes its own).
KernelUse = Literal["per_layer", "first", "parallel", "fixed"]
# The `StageConfig` fields a stage reads whatever its block; a spec lists the others its kind reads.
STAGE_FIELDS = ("block", "channels", "activation", "pool", "dropout", "spatial_dropout", "attention", "shortcut")


@dataclass(frozen=True)
class BlockSpec:
    """One block kind's facts.

    label: its short name in one-line summaries; noun: what error messages call one block.
    module: the class in hybridnas.models.blocks that a stage of this kind is made of.
    reads: the `StageConfig` fields it reads besides `STAGE_FIELDS`; a kind takes a stride and
        SE exactly when it reads `stride` and `se_reduction`.
    expansion: output channels per unit of `channels` (a bottleneck widens its output).
    kernels, fixed_kernels: how it uses `kernel_sizes` (`KernelUse`); for "fixed", the sizes its
        convs have, as summaries show them.
    keeps_width: its output width is its input width (an identity shortcut with no projection).
    norms: the `norm` placements it builds; another one it reads is built as "post", and
        "end" is refused where it is not listed.
    """

    label: str
    noun: str
    module: str
    reads: tuple[str, ...]
    kernels: KernelUse
    expansion: int = 1
    fixed_kernels: str = ""
    keeps_width: bool = False
    norms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse a spec whose facts contradict each other, at import."""
        fixed = self.kernels == "fixed"
        if fixed != bool(self.fixed_kernels) or fixed == ("kernel_sizes" in self.reads):
            raise ValueError(f"{self.label}: fixed kernels have fixed_kernels and do not read kernel_sizes")
        if bool(self.norms) != ("norm" in self.reads):
            raise ValueError(f"{self.label}: norms are listed exactly when the block reads norm")

    @property
    def takes_stride(self) -> bool:
        return "stride" in self.reads

    @property
    def takes_se(self) -> bool:
        return "se_reduction" in self.reads

    @property
    def module_class(self) -> type[nn.Module]:
        """The module class (imports torch)."""
        return getattr(importlib.import_module("hybridnas.models.blocks"), self.module)


BLOCK_SPECS: Registry[BlockSpec] = Registry("block", BlockKind, entry="spec")

BLOCK_SPECS.add("conv", BlockSpec(
    label="conv", noun="conv stack", module="ConvStack", reads=("depth", "kernel_sizes", "stride", "norm"),
    kernels="per_layer", norms=("post", "pre", "end", "none"),
))
BLOCK_SPECS.add("residual", BlockSpec(
    label="res", noun="residual module", module="ConvResidualModule",
    reads=("depth", "kernel_sizes", "norm", "se_reduction"), kernels="first", keeps_width=True,
    norms=("post", "pre", "none"),
))
BLOCK_SPECS.add("basic", BlockSpec(
    label="basic", noun="basic block", module="ResidualBlock", reads=("depth", "stride", "se_reduction"),
    kernels="fixed", fixed_kernels="3",
))
BLOCK_SPECS.add("bottleneck", BlockSpec(
    label="bneck", noun="bottleneck block", module="ResidualBlock", reads=("depth", "stride", "se_reduction"),
    kernels="fixed", fixed_kernels="1/3/1", expansion=4,
))
BLOCK_SPECS.add("multiscale", BlockSpec(
    label="ms", noun="multiscale embedding", module="MultiScaleConv", reads=("kernel_sizes", "norm"),
    kernels="parallel", norms=("post", "none"),
))
BLOCK_SPECS.check()


def kinds_where(test: Callable[[BlockSpec], bool]) -> list[str]:
    """The kinds whose spec passes `test`, in the config's order (for messages that list them)."""
    return [kind for kind in BLOCK_SPECS.kinds if test(BLOCK_SPECS[kind])]
