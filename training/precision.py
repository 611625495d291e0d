"""Which precision and memory layout a model trains in, and the autocast context that applies it.

On CUDA amp "auto" is a fixed rule; on the CPU it is measured per architecture, because bf16 +
channels_last is 3x faster for some models on an AMX CPU and slower for others.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import NamedTuple

import torch
from torch import nn

from hybridnas.models import ArchConfig
from hybridnas.training.settings import TrainSettings

_DTYPE_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class Precision(NamedTuple):
    """The autocast dtype (None: fp32) and the memory format of the model and its inputs."""

    dtype: torch.dtype | None
    memory_format: torch.memory_format

    @property
    def name(self) -> str:
        """As TrainResult.precision reports it, e.g. "bf16, channels_last"."""
        layout = "channels_last" if self.memory_format == torch.channels_last else "NCHW"
        return f"{_DTYPE_NAMES[self.dtype]}, {layout}"

    def autocast(self, device: torch.device) -> AbstractContextManager:
        """torch.autocast to `dtype` on `device`; nothing for fp32."""
        return torch.autocast(device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `setting` on `device`, or None for fp32."""
    if setting == "off":
        return None
    if setting in ("bf16", "fp16"):
        return torch.bfloat16 if setting == "bf16" else torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def choose_precision(model: nn.Module, config: ArchConfig, settings: TrainSettings, device: torch.device) -> Precision:
    """The precision `settings` ask for on `device`; amp "auto" on the CPU is measured (`cpu_precision`)."""
    if settings.amp == "auto" and device.type == "cpu":
        return cpu_precision(model, config, settings.batch_size)
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    return Precision(amp_dtype(settings.amp, device), memory_format)


_CPU_PRECISION_CACHE: dict[tuple[str, int], Precision] = {}


def cpu_precision(model: nn.Module, config: ArchConfig, batch_size: int) -> Precision:
    """amp "auto" on the CPU: time forward+backward in fp32 NCHW and in bf16 channels_last, keep the faster.

    Runs in eval mode (no BatchNorm statistics move), leaves no gradients behind and draws its probe
    batch from a generator of its own, so training after it sees the same global random stream
    (dropout masks) as with its choice set explicitly. Cached per
    architecture (the config without its name: an exported trial is named apart from the trial)
    and batch size for the process, so the same architecture trains the same way twice even when
    a busy machine would tip the timing the other way.
    Without AMX tiles bf16 has no fast kernels, so fp32 is taken unmeasured.
    """
    key = (config.model_dump_json(exclude={"name"}), batch_size)
    if key in _CPU_PRECISION_CACHE:
        return _CPU_PRECISION_CACHE[key]
    candidates = [Precision(None, torch.contiguous_format)]
    if torch.cpu._is_amx_tile_supported():
        candidates.append(Precision(torch.bfloat16, torch.channels_last))
    inp = config.input
    x = torch.randn(min(batch_size, 32), inp.channels, inp.image_size, inp.image_size,
                    generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    seconds = {}
    for candidate in candidates if len(candidates) > 1 else []:
        model.to(memory_format=candidate.memory_format)
        xs = x.contiguous(memory_format=candidate.memory_format)
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            with candidate.autocast(torch.device("cpu")):
                loss = model(xs).float().sum()
            loss.backward()
            timings.append(time.perf_counter() - start)
        seconds[candidate] = min(timings[1:])
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    choice = min(seconds, key=seconds.get) if seconds else candidates[0]
    _CPU_PRECISION_CACHE[key] = choice
    return choice
