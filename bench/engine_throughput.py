"""Training throughput of hybridnas' engine against the papers' data pipeline, interleaved.

Papers' pipeline: a torchvision-style dataset (CIFAR10's __getitem__: PIL image per sample) with
transforms.Compose(RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize),
a DataLoader with worker processes, and a plain fp32 NCHW loop with torch.optim.SGD.
Engine: `train_model` with its defaults (device-side uint8 data, batched augmentation, AMP
where it helps, channels_last, fused optimizer). Same model, batch size and device; the two
alternate round by round so machine noise hits both. Run from the repo root:

    python bench/engine_throughput.py --rounds 3 --steps 5 --out bench/engine_throughput.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import VisionDataset

from harness import CIFAR
from hybridnas.models import HybridOutput, build
from hybridnas.models.presets import preset
from hybridnas.models.profile import profile
from hybridnas.training.data import DataSplits, load_data
from hybridnas.training.loop import train_model
from hybridnas.training.settings import TrainSettings

PRESETS = ("zureick", "group18", "chae", "samc", "se_r_resnet34")


class ArrayCIFAR(VisionDataset):
    """torchvision.datasets.CIFAR10 minus the pickle reading: same in-memory HWC array, same __getitem__."""

    def __init__(self, data: np.ndarray, targets: list[int], transform: transforms.Compose) -> None:
        super().__init__(root="", transform=transform)
        self.data, self.targets = data, targets

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.data[index])
        return self.transform(img), self.targets[index]

    def __len__(self) -> int:
        return len(self.data)


def gemm_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Best-of-`repeats` FLOP/s of one n x n x n matmul: the machine's dense peak for `dtype`."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def papers_loader(data: DataSplits, batch_size: int, workers: int) -> DataLoader:
    tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(data.mean, data.std),
    ])
    ds = ArrayCIFAR(data.train_x.permute(0, 2, 3, 1).numpy(), data.train_y.tolist(), tf)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                      persistent_workers=workers > 0, drop_last=True)


def papers_images_per_s(name: str, loader: DataLoader, steps: int) -> float:
    """One warm-up step (workers start, kernels tune), then `steps` timed steps."""
    cfg = preset(name, num_classes=10, image_size=32)
    model = build(cfg).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    weights = [a.loss_weight for a in cfg.aux]
    done, start = -1, 0.0
    while done < steps:
        for x, y in loader:
            if done == 0:
                start = time.perf_counter()
            out = model(x)
            if isinstance(out, HybridOutput):
                loss = criterion(out.logits, y) + sum(w * criterion(a, y) for w, a in zip(weights, out.aux_logits))
            else:
                loss = criterion(out, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return steps * loader.batch_size / (time.perf_counter() - start)


def engine_images_per_s(name: str, data: DataSplits, batch_size: int) -> tuple[float, str]:
    """Two epochs of `steps` batches; the second (warm) epoch's training images/s, and the precision
    amp="auto" measured best for this model."""
    cfg = preset(name, num_classes=10, image_size=32)
    settings = TrainSettings(epochs=2, batch_size=batch_size, device="cpu", measure_latency=False)
    result = train_model(cfg, data, settings)
    return result.history[-1].images_per_s, result.precision


def main() -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n_train = args.steps * args.batch_size
    data = load_data(CIFAR, train_subset=n_train, val_subset=args.batch_size, device="cpu")
    print(f"{torch.get_num_threads()} threads", flush=True)
    peaks: dict[torch.dtype, list[float]] = {torch.float32: [], torch.bfloat16: []}
    results = []
    for name in args.presets:
        macs = profile(preset(name, num_classes=10, image_size=32)).macs
        loader = papers_loader(data, args.batch_size, args.workers)
        engine, papers = [], []
        for r in range(args.rounds):
            for dtype, seen in peaks.items():
                seen.append(gemm_peak(dtype))
            images_per_s, precision = engine_images_per_s(name, data, args.batch_size)
            engine.append(images_per_s)
            papers.append(papers_images_per_s(name, loader, args.steps))
            print(f"{name} round {r + 1}: engine {engine[-1]:.1f} img/s ({precision}), "
                  f"papers {papers[-1]:.1f} img/s", flush=True)
        del loader
        ratios = [e / p for e, p in zip(engine, papers)]
        results.append({
            "preset": name, "macs": macs, "engine_precision": precision,
            "engine_images_per_s": engine, "papers_images_per_s": papers,
            "ratios": ratios, "median_ratio": statistics.median(ratios),
            "engine_train_flops": max(engine) * 6 * macs,
        })
    # The least-disturbed measurements: the best GEMM and the best engine round, both taken on a shared machine.
    fp32_peak, bf16_peak = max(peaks[torch.float32]), max(peaks[torch.bfloat16])
    for r in results:
        r["fraction_of_fp32_gemm_peak"] = r["engine_train_flops"] / fp32_peak
        r["fraction_of_bf16_gemm_peak"] = r["engine_train_flops"] / bf16_peak
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds, "workers": args.workers,
        "fp32_gemm_peak_flops": fp32_peak, "bf16_gemm_peak_flops": bf16_peak,
        "median_ratio_over_presets": statistics.median(r["median_ratio"] for r in results), "presets": results,
    }
    print(f"\nfp32 GEMM peak {fp32_peak / 1e9:.0f} GFLOP/s, bf16 {bf16_peak / 1e9:.0f} GFLOP/s (best of the run)")
    print("| preset | MACs | engine precision | engine img/s | papers img/s | ratio | engine FLOP/s / fp32 peak | / bf16 peak |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['preset']} | {r['macs'] / 1e6:.1f}M | {r['engine_precision']} | "
              f"{statistics.median(r['engine_images_per_s']):.1f} | "
              f"{statistics.median(r['papers_images_per_s']):.1f} | {r['median_ratio']:.2f}x | "
              f"{r['fraction_of_fp32_gemm_peak']:.0%} | {r['fraction_of_bf16_gemm_peak']:.0%} |")
    print(f"\nmedian ratio over presets: {summary['median_ratio_over_presets']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--presets", nargs="+", default=list(PRESETS))
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--steps", type=int, default=5, help="timed training steps per round and pipeline")
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the papers' pipeline")
parser.add_argument("--threads", type=int, default=0, help="torch threads for both (0: torch's default)")
parser.add_argument("--out", default="bench/engine_throughput.json")

if __name__ == "__main__":
    args = parser.parse_args()
    main()
