"""The papers' optimizers and per-step learning-rate schedules, built from TrainSettings."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim import lr_scheduler

from hybridnas.training.settings import TrainSettings

_STEP_MILESTONES = (0.3, 0.6, 0.8)


def make_optimizer(model: nn.Module, settings: TrainSettings, device: torch.device) -> torch.optim.Optimizer:
    """The papers' optimizers, fused; no weight decay on biases and norm weights (1-D tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    wd = settings.resolved_weight_decay
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type in ("cuda", "cpu")
    lr = settings.resolved_lr
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=settings.momentum, nesterov=settings.momentum > 0, fused=fused)
    cls = torch.optim.Adam if settings.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=lr, fused=fused)


def make_scheduler(
    optimizer: torch.optim.Optimizer, settings: TrainSettings, steps_per_epoch: int
) -> lr_scheduler.LRScheduler:
    """A per-step schedule: linear warm-up, then cosine / SE-R's step / constant; or one-cycle."""
    total = settings.epochs * steps_per_epoch
    if settings.schedule == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=settings.resolved_lr, total_steps=total)
    warmup = min(round(settings.warmup_epochs * steps_per_epoch), total - 1)
    rest = total - warmup
    if settings.schedule == "cosine":
        main: lr_scheduler.LRScheduler = lr_scheduler.CosineAnnealingLR(optimizer, T_max=rest)
    elif settings.schedule == "step":
        milestones = [max(1, round(f * total) - warmup) for f in _STEP_MILESTONES]
        main = lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.2)
    else:
        main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup <= 0:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
