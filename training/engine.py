"""The trial engine: train and evaluate one architecture config on in-memory data splits.

The hot loop has no DataLoader, no per-sample work and no host synchronisation per step:
batches are gathered from the uint8 split on the device, augmented there, and the loss is
accumulated on the device; the host looks at it every `_CHECK_EVERY` steps (NaN guard) and at
the end of each epoch (metrics, the `on_epoch` callback a pruner hooks into).
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import lr_scheduler

from hybridnas.models import ArchConfig, ConfigError, HybridOutput, build
from hybridnas.models.profile import profile
from hybridnas.training.augment import AugmentSettings, augment_batch, to_input
from hybridnas.training.data import DataSplits, resolve_device

_CHECK_EVERY = 32
_DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}
_DEFAULT_WD = {"sgd": 5e-4, "adam": 0.0, "adamw": 0.05}
_STEP_MILESTONES = (0.3, 0.6, 0.8)


@dataclass
class TrainSettings:
    """How to train. Defaults follow SE-R's CIFAR recipe (SGD + Nesterov, crop + flip) with cosine decay.

    lr None: sgd 0.1 x batch_size / 128 (linear scaling of the usual CIFAR value), adam and
    adamw 1e-3. weight_decay None: sgd 5e-4, adam 0, adamw 0.05; never applied to biases and
    norm weights. schedule "step" is SE-R's (divide by 5 at 30/60/80% of the epochs);
    warm-up is linear over `warmup_epochs` (ignored by "onecycle", which has its own).
    amp "auto": bf16 on CUDA when supported (else fp16 with loss scaling). On the CPU, bf16 +
    channels_last only where it measures faster than fp32 NCHW for this very model (a few timed
    steps before training; `cpu_precision`): it is 3x faster for Zureick's convs on an AMX CPU
    but slower for the SE-ResNets (docs/benchmarks.md). Set amp "off" or "bf16" to fix it.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    crop_padding: int = 4
    flip: bool = True
    rotation: float = 0.0
    cutout: int = 0
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 512
    measure_latency: bool = True

    def __post_init__(self) -> None:
        checks = {
            "optimizer": (self.optimizer, _DEFAULT_LR),
            "schedule": (self.schedule, ("cosine", "step", "onecycle", "constant")),
            "amp": (self.amp, ("auto", "off", "bf16", "fp16")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"TrainSettings.{name}: {value!r} is not one of {', '.join(allowed)}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("TrainSettings: epochs, batch_size and eval_batch_size must be >= 1")

    @property
    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        base = _DEFAULT_LR[self.optimizer]
        return base * self.batch_size / 128 if self.optimizer == "sgd" else base

    @property
    def augment(self) -> AugmentSettings:
        return AugmentSettings(self.crop_padding, self.flip, self.rotation, self.cutout)


@dataclass
class EpochReport:
    epoch: int
    train_loss: float
    val_loss: float
    val_top1: float
    val_top5: float
    seconds: float
    images_per_s: float


@dataclass
class TrainResult:
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
        """Everything but the model, as plain JSON-ready values."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("model", "history")}
        out["history"] = [r.__dict__ for r in self.history]
        return out


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
    inp = config.input
    wanted = (inp.num_classes, inp.image_size, inp.channels)
    have = (data.num_classes, data.image_size, data.channels)
    if wanted != have:
        raise ConfigError(
            f"config expects {inp.num_classes} classes, {inp.image_size}x{inp.image_size}x{inp.channels} input; "
            f"the data has {data.num_classes} classes, {data.image_size}x{data.image_size}x{data.channels} images "
            "(rebuild the config with cfg.with_input(num_classes=..., image_size=...))"
        )


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `setting` on `device`, or None for fp32."""
    if setting == "off":
        return None
    if setting in ("bf16", "fp16"):
        return torch.bfloat16 if setting == "bf16" else torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


_CPU_PRECISION_CACHE: dict[tuple[str, int], tuple[torch.dtype | None, torch.memory_format]] = {}


def cpu_precision(model: nn.Module, config: ArchConfig, batch_size: int) -> tuple[torch.dtype | None, torch.memory_format]:
    """amp "auto" on the CPU: time forward+backward in fp32 NCHW and in bf16 channels_last, keep the faster.

    Runs in eval mode (no BatchNorm statistics move) and leaves no gradients behind. Cached per
    architecture and batch size for the process, so the same config trains the same way twice.
    Without AMX tiles bf16 has no fast kernels, so fp32 is taken unmeasured.
    """
    key = (config.model_dump_json(), batch_size)
    if key in _CPU_PRECISION_CACHE:
        return _CPU_PRECISION_CACHE[key]
    candidates: list[tuple[torch.dtype | None, torch.memory_format]] = [(None, torch.contiguous_format)]
    if torch.cpu._is_amx_tile_supported():
        candidates.append((torch.bfloat16, torch.channels_last))
    inp = config.input
    x = torch.randn(min(batch_size, 32), inp.channels, inp.image_size, inp.image_size)
    was_training = model.training
    model.eval()
    seconds = {}
    for dtype, memory_format in candidates if len(candidates) > 1 else []:
        model.to(memory_format=memory_format)
        xs = x.contiguous(memory_format=memory_format)
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            with _autocast(torch.device("cpu"), dtype):
                loss = model(xs).float().sum()
            loss.backward()
            timings.append(time.perf_counter() - start)
        seconds[(dtype, memory_format)] = min(timings[1:])
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    choice = min(seconds, key=seconds.get) if seconds else candidates[0]
    _CPU_PRECISION_CACHE[key] = choice
    return choice


def precision_name(dtype: torch.dtype | None, memory_format: torch.memory_format) -> str:
    names = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    return f"{names[dtype]}, {'channels_last' if memory_format == torch.channels_last else 'NCHW'}"


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


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
    if settings.amp == "auto" and device.type == "cpu":
        dtype, memory_format = cpu_precision(model, config, settings.batch_size)
    else:
        dtype = amp_dtype(settings.amp, device)
        memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    step_model = torch.compile(model) if settings.compile else model
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    n = len(train_x)
    batch_size = min(settings.batch_size, n)
    steps_per_epoch = n // batch_size
    optimizer = make_optimizer(model, settings, device)
    scheduler = make_scheduler(optimizer, settings, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    aux_weights = [a.loss_weight for a in config.aux]
    gen = torch.Generator(device=device).manual_seed(settings.seed)
    mean, std = list(data.mean), list(data.std)
    aug = settings.augment

    def loss_of(out: torch.Tensor | HybridOutput, y: torch.Tensor) -> torch.Tensor:
        if isinstance(out, HybridOutput):
            loss = criterion(out.logits, y)
            for w, aux in zip(aux_weights, out.aux_logits):
                loss = loss + w * criterion(aux, y)
            return loss
        return criterion(out, y)

    history: list[EpochReport] = []
    status, reason = "ok", None
    train_seconds = 0.0
    total_steps = settings.epochs * steps_per_epoch
    for epoch in range(1, settings.epochs + 1):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(n, device=device, generator=gen)
        losses = torch.zeros(steps_per_epoch, device=device)
        checked = 0
        try:
            for step in range(steps_per_epoch):
                idx = perm[step * batch_size : (step + 1) * batch_size]
                x = augment_batch(train_x[idx], aug, mean, std, gen).contiguous(memory_format=memory_format)
                y = train_y[idx]
                with _autocast(device, dtype):
                    loss = loss_of(step_model(x), y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if settings.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip, foreach=True)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses[step] = loss.detach()
                if (step + 1) % _CHECK_EVERY == 0 or step + 1 == steps_per_epoch:
                    _check_finite(losses, checked, step + 1, epoch)
                    checked = step + 1
                if on_step is not None:
                    on_step((epoch - 1) * steps_per_epoch + step + 1, total_steps)
        except NonFiniteLoss as err:
            status, reason = "non_finite_loss", str(err)
            break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_train_seconds = time.perf_counter() - start
        train_seconds += epoch_train_seconds
        val_loss, val_top1, val_top5 = evaluate(model, data.val_x, data.val_y, data, settings, device, dtype, memory_format)
        report = EpochReport(
            epoch=epoch,
            train_loss=losses.mean().item(),
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
        _, test_top1, test_top5 = evaluate(model, data.test_x, data.test_y, data, settings, device, dtype, memory_format)
    latency1 = latency256 = None
    if settings.measure_latency and status == "ok":
        latency1, latency256 = (inference_latency_ms(model, config, b, device, dtype, memory_format) for b in (1, 256))
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
        device=_device_name(device),
        precision=precision_name(dtype, memory_format),
        model=model,
    )


def _check_finite(losses: torch.Tensor, first: int, end: int, epoch: int) -> None:
    """One host sync per window of steps; names the first bad step (1-based)."""
    window = losses[first:end]
    if not bool(torch.isfinite(window).all()):
        bad = first + int(torch.nonzero(~torch.isfinite(window))[0]) + 1
        raise NonFiniteLoss(f"non-finite loss at epoch {epoch} step {bad}")


def make_optimizer(model: nn.Module, settings: TrainSettings, device: torch.device) -> torch.optim.Optimizer:
    """The papers' optimizers, fused; no weight decay on biases and norm weights (1-D tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    wd = settings.weight_decay if settings.weight_decay is not None else _DEFAULT_WD[settings.optimizer]
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


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    data: DataSplits,
    settings: TrainSettings,
    device: torch.device,
    dtype: torch.dtype | None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[float, float, float]:
    """(mean loss, top-1, top-5) of `model` in eval mode; one host sync at the end."""
    model.eval()
    x, y = x.to(device), y.to(device)
    k = min(5, data.num_classes)
    totals = torch.zeros(3, device=device, dtype=torch.float64)
    for start in range(0, len(x), settings.eval_batch_size):
        xb = to_input(x[start : start + settings.eval_batch_size], list(data.mean), list(data.std))
        yb = y[start : start + settings.eval_batch_size]
        with _autocast(device, dtype):
            logits = model(xb.contiguous(memory_format=memory_format)).float()
        topk = logits.topk(k, dim=1).indices == yb.unsqueeze(1)
        totals += torch.stack(
            [F.cross_entropy(logits, yb, reduction="sum"), topk[:, 0].sum(), topk.any(dim=1).sum()]
        ).to(totals.dtype)
    loss, top1, top5 = (totals / len(x)).tolist()
    return loss, top1, top5


@torch.inference_mode()
def inference_latency_ms(
    model: nn.Module,
    config: ArchConfig,
    batch: int,
    device: torch.device,
    dtype: torch.dtype | None,
    memory_format: torch.memory_format,
    repeats: int = 5,
) -> float:
    """Median wall time of one eval forward pass at `batch`, after a warm-up pass."""
    model.eval()
    inp = config.input
    x = torch.randn(batch, inp.channels, inp.image_size, inp.image_size, device=device)
    x = x.contiguous(memory_format=memory_format)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        with _autocast(device, dtype):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: peak allocated by this run. CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
