"""Parameter and MAC counts, measured the way the fidelity table in DESIGN.md states them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hybridnas.models.config import ArchConfig
from hybridnas.models.supermodel import build


@dataclass(frozen=True)
class ModelProfile:
    params: int
    trainable_params: int
    macs: int
    modules: list[dict[str, int | str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "params": self.params,
            "trainable_params": self.trainable_params,
            "macs": self.macs,
            "modules": self.modules,
        }


def count_params(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, dict[str, int]]:
    """MACs of one eval-mode forward pass (FlopCounterMode total / 2), and per named submodule."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    root = type(model).__name__ + "."
    per_module = {
        name.removeprefix(root): int(sum(flops.values())) // 2
        for name, flops in counter.get_flop_counts().items()
        if name.startswith(root)
    }
    return counter.get_total_flops() // 2, per_module


def profile(config: ArchConfig, model: nn.Module | None = None) -> ModelProfile:
    """Params, trainable params and MACs at the config's own input size and class count."""
    model = model if model is not None else build(config)
    params, trainable = count_params(model)
    shape = (config.input.channels, config.input.image_size, config.input.image_size)
    macs, per_module_macs = count_macs(model, shape)
    modules = []
    for name, child in model.named_children():
        for sub_name, sub in ([(name, child)] if not isinstance(child, nn.ModuleList) else
                              [(f"{name}.{i}", m) for i, m in enumerate(child)]):
            modules.append({"module": sub_name, "params": count_params(sub)[0], "macs": per_module_macs.get(sub_name, 0)})
    return ModelProfile(params, trainable, macs, modules)
