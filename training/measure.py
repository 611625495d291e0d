"""What a model costs where it runs: inference latency (also of a config before it trains), peak
memory, and the device's name."""

from __future__ import annotations

import resource
import statistics
import sys
import time

import torch
from torch import nn

from hybridnas.models import ArchConfig
from hybridnas.training.precision import Precision
from hybridnas.training.settings import TrainSettings


@torch.inference_mode()
def inference_latency_ms(
    model: nn.Module,
    config: ArchConfig,
    batch: int,
    device: torch.device,
    precision: Precision,
    repeats: int = 5,
) -> float:
    """Median wall time of one eval forward pass at `batch`, after a warm-up pass."""
    model.eval()
    inp = config.input
    x = torch.randn(batch, inp.channels, inp.image_size, inp.image_size, device=device)
    x = x.contiguous(memory_format=precision.memory_format)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        with precision.autocast(device):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def latency_before_training(config: ArchConfig, settings: TrainSettings) -> float:
    """Batch-1 inference latency (ms) of `config`, built untrained, on the settings' device and in
    the precision its training will use (the CPU's measured choice is cached per architecture, so
    the training that follows takes the same one). A forward pass takes as long with any weights,
    so this is what the trained model costs, known before an epoch is spent on a sample that a
    latency limit would refuse."""
    from hybridnas.models import build
    from hybridnas.training.data import resolve_device
    from hybridnas.training.precision import choose_precision

    device = resolve_device(settings.device)
    model = build(config)
    precision = choose_precision(model, config, settings, device)
    model = model.to(device=device, memory_format=precision.memory_format)
    return inference_latency_ms(model, config, 1, device, precision)


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: peak allocated by this run. CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def device_name(device: torch.device) -> str:
    """The device as results and trial attributes report it: the GPU's model, or the CPU's threads."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
