"""The trial engine: train and evaluate one architecture config on in-memory data splits.

Shaped like torchvision's reference classification script: `train_one_epoch` and `evaluate`,
with `train_model` running the epochs, the `on_epoch` callback a pruner hooks into, the test
evaluation and the result. The hot loop has no DataLoader, no per-sample work and no host
synchronisation per step: batches are gathered from the uint8 split on the device, augmented
there, and the loss is accumulated on the device; the host looks at it every `_CHECK_EVERY`
steps (NaN guard) and at the end of each epoch.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler

from hybridnas.common import ConfigError
from hybridnas.models import ArchConfig, HybridOutput, build
from hybridnas.models.profile import profile
from hybridnas.training.augment import augment_batch, to_input
from hybridnas.training.data import DataSplits, resolve_device
from hybridnas.training.measure import device_name, inference_latency_ms, peak_memory_bytes
from hybridnas.training.optim import make_optimizer, make_scheduler
from hybridnas.training.precision import Precision, choose_precision
from hybridnas.training.settings import TrainSettings

_CHECK_EVERY = 32

Criterion = Callable[[torch.Tensor | HybridOutput, torch.Tensor], torch.Tensor]


@dataclass
class EpochReport:
    """One epoch's numbers, as `on_epoch` (a pruner, a progress bar) sees them after validation."""

    epoch: int
    train_loss: float
    val_loss: float
    val_top1: float
    val_top5: float
    seconds: float
    images_per_s: float


@dataclass
class TrainResult:
    """What one run produced: the trained model and the numbers `metrics()` turns into metrics.json."""

    status: str
    reason: str | None
    history: list[EpochReport]
    epochs_run: int
    val_top1: float | None
    val_top5: float | None
    test_top1: float | None
    test_top5: float | None
    params: int
    macs: int
    images_per_s: float
    seconds_per_epoch: float
    peak_memory_bytes: int
    latency_ms_batch1: float | None
    latency_ms_batch256: float | None
    device: str
    precision: str
    model: nn.Module = field(repr=False)

    def metrics(self) -> dict[str, object]:
        """Everything but the model, as plain JSON-ready values: a number that is not finite (the
        validation loss of a diverged epoch) is None, since JSON has no NaN or infinity."""
        out = {k: _finite_or_none(v) for k, v in self.__dict__.items() if k not in ("model", "history")}
        out["history"] = [{k: _finite_or_none(v) for k, v in r.__dict__.items()} for r in self.history]
        return out


def _finite_or_none(value: object) -> object:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class NonFiniteLoss(Exception):
    """Internal: ends training; train_model turns it into status 'non_finite_loss'."""


def train_model(
    config: ArchConfig,
    data: DataSplits,
    settings: TrainSettings,
    on_epoch: Callable[[EpochReport], None] | None = None,
    *,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train `config` on `data.train_*`, validating after every epoch; test at the end if present.

    `on_epoch` exceptions (e.g. optuna.TrialPruned) propagate unchanged. A non-finite loss returns
    status "non_finite_loss". torch.OutOfMemoryError propagates without a traceback that pins the
    model, batches or optimizer state. `on_step(done, total)` is for progress bars.
    """
    check_compatible(config, data)
    try:
        return _train(config, data, settings, on_epoch, on_step)
    except torch.OutOfMemoryError as err:
        message = str(err)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    raise torch.OutOfMemoryError(message)


def check_compatible(config: ArchConfig, data: DataSplits) -> None:
    """Refuse a config whose classes or input shape differ from the data's, before building anything."""
    inp = config.input
    wanted = (inp.num_classes, inp.image_size, inp.channels)
    have = (data.num_classes, data.image_size, data.channels)
    if wanted != have:
        raise ConfigError(
            f"config expects {inp.num_classes} classes, {inp.image_size}x{inp.image_size}x{inp.channels} input; "
            f"the data has {data.num_classes} classes, {data.image_size}x{data.image_size}x{data.channels} images "
            "(rebuild the config with cfg.with_input(num_classes=..., image_size=...))"
        )


def _train(
    config: ArchConfig,
    data: DataSplits,
    settings: TrainSettings,
    on_epoch: Callable[[EpochReport], None] | None,
    on_step: Callable[[int, int], None] | None,
) -> TrainResult:
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    model = build(config)
    prof = profile(config, model)
    precision = choose_precision(model, config, settings, device)
    model = model.to(device=device, memory_format=precision.memory_format)
    step_model = torch.compile(model) if settings.compile else model
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    batch_size = min(settings.batch_size, len(train_x))
    steps_per_epoch = len(train_x) // batch_size
    optimizer = make_optimizer(model, settings, device)
    scheduler = make_scheduler(optimizer, settings, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.dtype == torch.float16)
    criterion = _criterion(config, settings)
    gen = torch.Generator(device=device).manual_seed(settings.seed)

    history: list[EpochReport] = []
    status, reason = "ok", None
    train_seconds = 0.0
    for epoch in range(1, settings.epochs + 1):
        start = time.perf_counter()
        batches = _batches(train_x, train_y, batch_size, steps_per_epoch, data, settings, gen, precision)
        try:
            train_loss = train_one_epoch(
                step_model, criterion, optimizer, scheduler, scaler, batches, steps_per_epoch, epoch,
                device, precision, settings, on_step=on_step,
            )
        except NonFiniteLoss as err:
            status, reason = "non_finite_loss", str(err)
            break
        epoch_train_seconds = time.perf_counter() - start
        train_seconds += epoch_train_seconds
        val_loss, val_top1, val_top5 = evaluate(model, data.val_x, data.val_y, data, settings, device, precision)
        report = EpochReport(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_top1=val_top1,
            val_top5=val_top5,
            seconds=time.perf_counter() - start,
            images_per_s=steps_per_epoch * batch_size / epoch_train_seconds,
        )
        history.append(report)
        if on_epoch is not None:
            on_epoch(report)

    model.eval()
    test_top1 = test_top5 = None
    if status == "ok" and data.test_x is not None:
        _, test_top1, test_top5 = evaluate(model, data.test_x, data.test_y, data, settings, device, precision)
    latency1 = latency256 = None
    if settings.measure_latency and status == "ok":
        latency1, latency256 = (inference_latency_ms(model, config, b, device, precision) for b in (1, 256))
    epochs_run = len(history)
    return TrainResult(
        status=status,
        reason=reason,
        history=history,
        epochs_run=epochs_run,
        val_top1=history[-1].val_top1 if history else None,
        val_top5=history[-1].val_top5 if history else None,
        test_top1=test_top1,
        test_top5=test_top5,
        params=prof.params,
        macs=prof.macs,
        images_per_s=epochs_run * steps_per_epoch * batch_size / train_seconds if train_seconds else 0.0,
        seconds_per_epoch=statistics.fmean(r.seconds for r in history) if history else 0.0,
        peak_memory_bytes=peak_memory_bytes(device),
        latency_ms_batch1=latency1,
        latency_ms_batch256=latency256,
        device=device_name(device),
        precision=precision.name,
        model=model,
    )


def _criterion(config: ArchConfig, settings: TrainSettings) -> Criterion:
    """Cross-entropy on the logits plus each aux head's, weighted as the config says."""
    criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    aux_weights = [a.loss_weight for a in config.aux]

    def loss_of(out: torch.Tensor | HybridOutput, y: torch.Tensor) -> torch.Tensor:
        if isinstance(out, HybridOutput):
            loss = criterion(out.logits, y)
            for w, aux in zip(aux_weights, out.aux_logits):
                loss = loss + w * criterion(aux, y)
            return loss
        return criterion(out, y)

    return loss_of


def _batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    steps: int,
    data: DataSplits,
    settings: TrainSettings,
    gen: torch.Generator,
    precision: Precision,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of augmented batches from a fresh permutation: the DataLoader of this engine."""
    perm = torch.randperm(len(x), device=x.device, generator=gen)
    aug, mean, std = settings.augment, list(data.mean), list(data.std)
    for step in range(steps):
        idx = perm[step * batch_size : (step + 1) * batch_size]
        yield augment_batch(x[idx], aug, mean, std, gen).contiguous(memory_format=precision.memory_format), y[idx]


def train_one_epoch(
    model: nn.Module,
    criterion: Criterion,
    optimizer: torch.optim.Optimizer,
    scheduler: lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    epoch: int,
    device: torch.device,
    precision: Precision,
    settings: TrainSettings,
    *,
    on_step: Callable[[int, int], None] | None = None,
) -> float:
    """Train on `steps` batches; the epoch's mean loss, whose read waits for the epoch's device work.

    The losses stay on the device: the host reads them every `_CHECK_EVERY` steps and at the
    end, raising NonFiniteLoss at the first bad window, so no step waits for the host.
    """
    model.train()
    losses = torch.zeros(steps, device=device)
    checked = 0
    for step, (x, y) in enumerate(batches):
        with precision.autocast(device):
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if settings.grad_clip is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip, foreach=True)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        losses[step] = loss.detach()
        if (step + 1) % _CHECK_EVERY == 0 or step + 1 == steps:
            _check_finite(losses, checked, step + 1, epoch)
            checked = step + 1
        if on_step is not None:
            on_step((epoch - 1) * steps + step + 1, settings.epochs * steps)
    return losses.mean().item()


def _check_finite(losses: torch.Tensor, first: int, end: int, epoch: int) -> None:
    """One host sync per window of steps; names the first bad step (1-based)."""
    window = losses[first:end]
    if not bool(torch.isfinite(window).all()):
        bad = first + int(torch.nonzero(~torch.isfinite(window))[0]) + 1
        raise NonFiniteLoss(f"non-finite loss at epoch {epoch} step {bad}")


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    data: DataSplits,
    settings: TrainSettings,
    device: torch.device,
    precision: Precision,
) -> tuple[float, float, float]:
    """(mean loss, top-1, top-5) of `model` in eval mode; one host sync at the end."""
    model.eval()
    x, y = x.to(device), y.to(device)
    k = min(5, data.num_classes)
    totals = torch.zeros(3, device=device, dtype=torch.float64)
    for start in range(0, len(x), settings.eval_batch_size):
        xb = to_input(x[start : start + settings.eval_batch_size], list(data.mean), list(data.std))
        yb = y[start : start + settings.eval_batch_size]
        with precision.autocast(device):
            logits = model(xb.contiguous(memory_format=precision.memory_format)).float()
        topk = logits.topk(k, dim=1).indices == yb.unsqueeze(1)
        totals += torch.stack(
            [F.cross_entropy(logits, yb, reduction="sum"), topk[:, 0].sum(), topk.any(dim=1).sum()]
        ).to(totals.dtype)
    loss, top1, top5 = (totals / len(x)).tolist()
    return loss, top1, top5
