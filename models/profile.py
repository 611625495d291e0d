"""Parameter and MAC counts, measured the way the fidelity table in DESIGN.md states them.

A search rejects samples that break a parameter or MAC limit before training them, so counting
must be cheap: it builds the model on the meta device (no weights are allocated or initialised)
and runs it on a meta input (nothing is computed, only shapes), counting the MACs of its
convolutions, linear layers and attention products with FlopCounterMode's formulas: the
FlopCounterMode total / 2 that DESIGN.md defines, without its per-op overhead.

Attention's two products (QK^T and AV) are always counted. Counting on a real CPU would miss
them wherever the fused CPU kernel runs (FlopCounterMode has no formula for it) and count them on
CUDA: the same architecture would get different MACs on different workers.

Meta tensors still pay for Python: their kernels for linear layers, convolutions and attention
are decompositions that took most of a count, and so did initialising the meta weights. The
counter works out those three ops' output shapes by arithmetic instead, and the weightless twin
is built without initialisation, so a rejected sample costs tens of milliseconds
(bench/infeasible_cost.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

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


class _MacCounter(TorchFunctionMode):
    """MACs of the only ops these models multiply in, with FlopCounterMode's formulas, per top module.

    FlopCounterMode counts at the dispatcher, where every op of a forward pass (reshapes, adds,
    pools, meta kernels decomposed in Python) pays its toll; only convolutions, linear layers
    and attention's two products carry MACs here, so they are counted where they are called,
    at the torch-function level. tests/test_model_profile.py checks the totals equal
    FlopCounterMode's (/ 2) on the presets and on sampled configs.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.total = 0
        self.by_module: Counter[str] = Counter()
        self.current = ""
        for name, child in _top_modules(model):
            child.register_forward_pre_hook(lambda module, args, name=name: self._enter(name))

    def _enter(self, name: str) -> None:
        self.current = name

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict | None = None) -> Any:
        count = _COUNTED.get(func)
        if count is None:
            return func(*args, **(kwargs or {}))
        first, shape, macs = count(*args, **(kwargs or {}))
        self.total += macs
        self.by_module[self.current] += macs
        return first.new_empty(shape)


# Each counted op: called as the op is, it returns its first tensor, its output's shape and its MACs.
Counted = tuple[torch.Tensor, tuple[int, ...], int]


def _conv2d(input: torch.Tensor, weight: torch.Tensor, bias: Any = None, stride: Any = 1, padding: Any = 0,
            dilation: Any = 1, groups: int = 1) -> Counted:
    """Output size from the formula in nn.Conv2d's documentation; (in channels per group) x
    kernel MACs per output element."""
    sizes = input.shape[-2:]
    if padding == "same":
        spatial = tuple(sizes)
    else:
        pads = (0, 0) if padding == "valid" else _pair(padding)
        spatial = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
                        zip(sizes, pads, _pair(dilation), weight.shape[-2:], _pair(stride)))
    shape = (*input.shape[:-3], weight.shape[0], *spatial)
    return input, shape, math.prod(shape) * math.prod(weight.shape[1:])


def _pair(value: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[-1])


def _linear(input: torch.Tensor, weight: torch.Tensor, bias: Any = None) -> Counted:
    shape = (*input.shape[:-1], weight.shape[0])
    return input, shape, math.prod(shape) * weight.shape[1]


def _attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any) -> Counted:
    """QK^T and AV."""
    batch = math.prod(query.shape[:-2])
    macs = batch * query.shape[-2] * key.shape[-2] * (query.shape[-1] + value.shape[-1])
    return query, (*query.shape[:-1], value.shape[-1]), macs


_COUNTED = {F.conv2d: _conv2d, F.linear: _linear, F.scaled_dot_product_attention: _attention}


class _WithoutInitialisers(TorchFunctionMode):
    """Builds a model without running its weight initialisers: a meta tensor has no values to set,
    yet its random fills still pay for Python decompositions."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict | None = None) -> Any:
        if func in _INITIALISERS:
            return args[0] if args else kwargs["tensor"]  # the tensor, as the initialiser would return it
        return func(*args, **(kwargs or {}))


_INITIALISERS = {
    torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.zero_, torch.Tensor.fill_,
    nn.init.uniform_, nn.init.normal_, nn.init.trunc_normal_, nn.init.kaiming_uniform_, nn.init.kaiming_normal_,
    nn.init.xavier_uniform_, nn.init.xavier_normal_, nn.init.zeros_, nn.init.ones_, nn.init.constant_,
}


# No MACs in these, and on the meta device they return a tensor laid out as their input; but
# their meta kernels are Python decompositions that would take most of a count's time, so the
# counted model does without them.
_SHAPE_KEEPING_UNCOUNTED = (nn.BatchNorm2d, nn.LayerNorm, nn.ReLU, nn.GELU)


def _drop_shape_keeping_uncounted(model: nn.Module) -> None:
    for name, child in model.named_children():
        if isinstance(child, _SHAPE_KEEPING_UNCOUNTED):
            setattr(model, name, nn.Identity())
        else:
            _drop_shape_keeping_uncounted(child)


def _count_macs(meta_model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, dict[str, int]]:
    """MACs of one eval-mode forward pass of a meta-device model, and per top module; the model
    is counted in place and left without its norm and activation layers."""
    _drop_shape_keeping_uncounted(meta_model)
    meta_model.eval()
    counter = _MacCounter(meta_model)
    with torch.no_grad(), counter:
        meta_model(torch.empty(1, *input_shape, device="meta"))
    return counter.total, dict(counter.by_module)


def profile(config: ArchConfig, model: nn.Module | None = None) -> ModelProfile:
    """Params, trainable params and MACs at the config's own input size and class count.

    MACs come from a weightless twin built from the config; a `model` built from the same
    config, when given, is only read for its parameters (trainable as they are set now) and
    is never run, so counting leaves its mode, weights, statistics and the RNG untouched.
    """
    with torch.device("meta"), _WithoutInitialisers():
        twin = build(config)
    counted = model if model is not None else twin
    params, trainable = count_params(counted)
    module_params = {name: count_params(sub)[0] for name, sub in _top_modules(counted)}
    shape = (config.input.channels, config.input.image_size, config.input.image_size)
    macs, module_macs = _count_macs(twin, shape)
    modules: list[dict[str, int | str]] = [
        {"module": name, "params": n, "macs": module_macs.get(name, 0)} for name, n in module_params.items()
    ]
    return ModelProfile(params, trainable, macs, modules)


def _top_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The model's children, with each ModuleList (stages, aux heads) opened into its items."""
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            yield from ((f"{name}.{i}", item) for i, item in enumerate(child))
        else:
            yield name, child
