"""How to train: `TrainSettings`, checked when built.

No torch here: the CLI and the study definition build and check settings before anything
trains, and must start fast.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hybridnas.common import ConfigError, format_validation_error

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["cosine", "step", "onecycle", "constant"]
Amp = Literal["auto", "off", "bf16", "fp16"]

_DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}
_DEFAULT_WD = {"sgd": 5e-4, "adam": 0.0, "adamw": 0.05}

# Seeds as numpy's generators take them (Optuna's samplers pass theirs to numpy).
MAX_SEED = 2**32 - 1
# Bounds no run gets near, so a typo (an extra digit, a pasted number) is refused where it is
# typed instead of overflowing or allocating inside a worker hours later.
MAX_EPOCHS = 100_000
MAX_BATCH = 1_000_000
# What `device` may name; `resolve_device` (training.data) checks it against the machine.
DEVICE_NAMES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d{1,3})?")


def device_problem(name: object) -> str | None:
    """Why `name` is not a device name, or None; its form only, no torch needed."""
    if isinstance(name, str) and _DEVICE.fullmatch(name):
        return None
    return f"{name!r} is not a device; use {DEVICE_NAMES}"


@dataclass(frozen=True)
class AugmentSettings:
    """The batched augmentation `augment_batch` applies; 0 or False turns a step off."""

    crop_padding: int = 4
    flip: bool = True
    rotation: float = 0.0
    cutout: int = 0


class TrainSettings(BaseModel):
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

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS, description="Epochs to train.")] = 10
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH, description="Training batch size.")] = 128
    optimizer: Annotated[Optimizer, Field(description="sgd (Nesterov), adam or adamw.")] = "sgd"
    lr: Annotated[float, Field(gt=0)] | None = Field(None, description="Learning rate (default: sgd 0.1 x batch/128, adam and adamw 1e-3).")
    weight_decay: Annotated[float, Field(ge=0)] | None = Field(None, description="Weight decay (default: sgd 5e-4, adam 0, adamw 0.05).")
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    schedule: Annotated[Schedule, Field(description="Learning-rate schedule after the warm-up.")] = "cosine"
    warmup_epochs: Annotated[float, Field(ge=0, le=MAX_EPOCHS)] = 0.0
    label_smoothing: Annotated[float, Field(ge=0, le=1, description="Label smoothing of the cross-entropy loss.")] = 0.0
    grad_clip: Annotated[float, Field(gt=0)] | None = None
    crop_padding: Annotated[int, Field(ge=0, le=1024)] = 4
    flip: bool = True
    rotation: Annotated[float, Field(ge=0, le=180)] = 0.0
    cutout: Annotated[int, Field(ge=0, le=8192)] = 0
    amp: Annotated[Amp, Field(description="Mixed precision: auto measures bf16 against fp32 on the CPU.")] = "auto"
    channels_last: Annotated[bool, Field(description="Channels-last memory layout with amp off, bf16 or fp16 (amp auto on the CPU picks it with the dtype).")] = True
    compile: Annotated[bool, Field(description="torch.compile the model.")] = False
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    device: Annotated[str, Field(description="auto, cpu, cuda or cuda:N.")] = "auto"
    eval_batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 512
    measure_latency: bool = True

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        problem = device_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def resolved_lr(self) -> float:
        """`lr`, or the optimizer's default (scaled with the batch size for sgd)."""
        if self.lr is not None:
            return self.lr
        base = _DEFAULT_LR[self.optimizer]
        return base * self.batch_size / 128 if self.optimizer == "sgd" else base

    @property
    def resolved_weight_decay(self) -> float:
        """`weight_decay`, or the optimizer's default."""
        return self.weight_decay if self.weight_decay is not None else _DEFAULT_WD[self.optimizer]

    def resolved(self) -> TrainSettings:
        """These settings with lr and weight decay as the optimizer takes them (None: its default),
        so two settings that train alike compare equal."""
        return self.model_copy(update={"lr": self.resolved_lr, "weight_decay": self.resolved_weight_decay})

    @property
    def augment(self) -> AugmentSettings:
        """The augmentation fields, in the form `augment_batch` takes."""
        return AugmentSettings(self.crop_padding, self.flip, self.rotation, self.cutout)


# What a study or a space may set: everything but the epochs (the study's budget), the seed
# (the study's) and the device (the worker's).
SEARCHABLE_FIELDS = tuple(name for name in TrainSettings.model_fields if name not in ("epochs", "seed", "device"))


def parse_settings(values: Mapping[str, Any]) -> TrainSettings:
    """Validate `values` into TrainSettings, or raise ConfigError naming each bad field and value.

    One line, unlike pydantic's own message, which also leaves out the value that was given.
    """
    try:
        return TrainSettings.model_validate(values)
    except ValidationError as err:
        given = ", ".join(f"{e['loc'][0]}={e['input']!r}" for e in err.errors())
        raise ConfigError(f"TrainSettings({given}): {format_validation_error(err)}") from None
