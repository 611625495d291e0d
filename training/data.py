"""Datasets as whole uint8 tensors on the training device, decoded once and cached on disk.

The training loop never touches PIL or DataLoader workers: a split is one N x C x H x W uint8
tensor, and augmentation runs batched on the device (see `hybridnas.training.augment`).
Decoding a JPEG tree is the slow part, so the decoded tensors are cached under
`$HYBRIDNAS_CACHE` (default `~/.cache/hybridnas`) keyed by the source's identity.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError

from hybridnas.common import ConfigError, DataError, first_line
from hybridnas.training.datasets import cache_dir, cifar_root, folder_path, spec_problem
from hybridnas.training.settings import device_problem

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_CACHE_VERSION = 1
_TEST_DIRS = ("test",)
_TRAIN_DIRS = ("train",)


@dataclass
class DataSplits:
    """Train/val (and optionally test) splits as uint8 N x C x H x W tensors on one device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    num_classes: int
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' means CUDA when present; a named device must exist on this machine, so a wrong
    name or a missing GPU is one ConfigError where the name comes in, not a CUDA traceback later."""
    name = str(device)
    problem = device_problem(name)
    if problem:
        raise ConfigError(f"device: {problem}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(name)
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device: {name}, but this machine has no CUDA GPU; use cpu or auto")
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(f"device: {name}, but this machine has {count} CUDA GPU(s): cuda:0 to cuda:{count - 1}")
    return resolved


def load_data(
    spec: str,
    *,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    train_subset: int | None = None,
    val_subset: int | None = None,
    test_subset: int | None = None,
    with_test: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    exact_subsets: bool = False,
) -> DataSplits:
    """Load a dataset and split a stratified, seeded validation set off its training split.

    spec: "cifar10" | "cifar100" (torchvision's on-disk format in `data_dir`, downloaded if
    absent and the network allows) or "folder:PATH" (an ImageFolder tree or a .tar/.tar.gz of
    one). The validation set depends only on (labels, val_fraction, seed), so quick trials with
    `train_subset` and full runs validate on the same images. `image_size` resizes folder
    images (they are resized to their most common size anyway when sizes differ).

    The test split is the dataset's own (its first `test_subset` images), or, for a dataset
    that has none, `test_subset` training images held out before anything else is split off:
    class-stratified, seeded, disjoint from train and val whether or not `with_test` asks for
    them, so a search never trains or validates on images its final score is taken on.

    `train_subset` / `val_subset` larger than their part of the split take all of it; with
    `exact_subsets` (new input: a launch's new study, `train`) they are a DataError with the
    numbers. Workers and retrains take a stored study's split as it has always been taken.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    raw = _load_raw(spec, data_dir, image_size)
    images, labels, classes = raw["train_x"], raw["train_y"], list(raw["classes"])
    test_x, test_y = raw.get("test_x"), raw.get("test_y")
    pool = torch.arange(len(labels))
    if test_x is not None and test_subset is not None:
        test_x, test_y = test_x[:test_subset], test_y[:test_subset]
    elif test_x is None and test_subset is not None:
        pool, held = held_out_split(labels, test_subset, seed)
        test_x, test_y = images[held], labels[held]
    if with_test and test_x is None:
        raise DataError(f"{spec}: no test split (a folder dataset needs train/ and test/ directories, "
                        "or hold some training images out with test_subset)")
    train_idx, val_idx = (pool[i] for i in stratified_split(labels[pool], val_fraction, seed))
    held = f" after {len(labels) - len(pool):,} held out as test images" if len(pool) < len(labels) else ""
    for field, asked, part, images_of, remedy in (
            ("train_subset", train_subset, train_idx, "training", "lower val_fraction"),
            ("val_subset", val_subset, val_idx, "validation", "raise val_fraction")):
        if exact_subsets and asked is not None and asked > len(part):
            raise DataError(f"{field}: {asked:,} is more than the {len(part):,} {images_of} images there are "
                            f"({spec}: {len(pool):,} training images{held}, val_fraction {val_fraction:g}); "
                            f"ask for fewer or {remedy}")
    if train_subset is not None:
        train_idx = train_idx[:train_subset]
    if val_subset is not None:
        val_idx = val_idx[:val_subset]
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DataError(f"{spec}: empty split ({len(train_idx)} train, {len(val_idx)} val images)")
    train_x = images[train_idx]
    mean, std = channel_stats(train_x)
    dev = resolve_device(device)
    return DataSplits(
        train_x=train_x.to(dev),
        train_y=labels[train_idx].to(dev),
        val_x=images[val_idx].to(dev),
        val_y=labels[val_idx].to(dev),
        test_x=test_x.to(dev) if with_test else None,
        test_y=test_y.to(dev) if with_test else None,
        num_classes=len(classes),
        image_size=images.shape[-1],
        channels=images.shape[1],
        mean=mean,
        std=std,
        classes=classes,
    )


# Holding out test images draws from its own random stream, not the val split's.
_HELD_OUT_SEED_SALT = 104_729


def held_out_split(labels: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rest, held): `n` indices held out, class-stratified and seeded; the rest in index order."""
    if not 0 < n < len(labels):
        raise DataError(f"test_subset: {n} is not between 0 and the {len(labels)} training images")
    classes = len(torch.unique(labels))
    fraction = min((n + classes) / len(labels), 0.999)
    _, held = stratified_split(labels, fraction, seed + _HELD_OUT_SEED_SALT)
    held = held[:n]
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[held] = False
    return torch.nonzero(keep).flatten(), held


def stratified_split(labels: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices, disjoint and class-stratified, each in a class-interleaved order.

    Every prefix of either list is close to class-balanced, so taking the first k indices is a
    stratified subset; the val set is round(val_fraction * n_c) images of every class c.
    """
    gen = torch.Generator().manual_seed(seed)
    train_parts, val_parts, train_keys, val_keys = [], [], [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = max(1, round(val_fraction * len(idx))) if len(idx) > 1 else 0
        for part, keys, chunk in ((val_parts, val_keys, idx[:n_val]), (train_parts, train_keys, idx[n_val:])):
            part.append(chunk)
            keys.append((torch.arange(len(chunk)) + torch.rand(len(chunk), generator=gen)) / max(len(chunk), 1))
    return _interleave(train_parts, train_keys), _interleave(val_parts, val_keys)


def _interleave(parts: list[torch.Tensor], keys: list[torch.Tensor]) -> torch.Tensor:
    """Order indices by their relative rank within their class (a stable, jittered round-robin)."""
    order = torch.argsort(torch.cat(keys), stable=True)
    return torch.cat(parts)[order]


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units, accumulated in float64 chunks to bound memory."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _load_raw(spec: str, data_dir: str | Path | None, image_size: int | None) -> dict:
    problem = spec_problem(spec)
    if problem:
        raise DataError(problem)
    path = folder_path(spec)
    return _load_cifar(spec, data_dir) if path is None else _load_folder(path, image_size)


def _load_cifar(name: str, data_dir: str | Path | None) -> dict:
    """torchvision's CIFAR pickles are fast to read already, so they are not cached again.

    Without them, a JPEG ImageFolder export of the training split named
    `<name>-train-jpeg.tar.gz` in the data directory (as ../shared/data holds) stands in for
    the training split, before any download is tried; it has no test split.
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    root = cifar_root(data_dir)
    cls = CIFAR10 if name == "cifar10" else CIFAR100
    jpeg_export = root / f"{name}-train-jpeg.tar.gz"
    try:
        train, test = (cls(str(root), train=flag, download=not jpeg_export.is_file()) for flag in (True, False))
    except Exception as err:  # noqa: BLE001 - torchvision raises RuntimeError, URLError, OSError, ...
        if jpeg_export.is_file():
            return _load_folder(jpeg_export, None)
        raise DataError(f"{name}: not found in {root} and could not be downloaded ({first_line(err)})") from None

    def tensors(ds: CIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets, dtype=torch.int64)

    (train_x, train_y), (test_x, test_y) = tensors(train), tensors(test)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "classes": list(train.classes)}


@dataclass(frozen=True)
class DatasetShape:
    """What a model config needs to know of a dataset."""

    num_classes: int
    image_size: int
    channels: int


_CIFAR_SHAPES = {"cifar10": DatasetShape(10, 32, 3), "cifar100": DatasetShape(100, 32, 3)}


def dataset_shape(spec: str, *, data_dir: str | Path | None = None) -> DatasetShape:
    """Class count, image size and channels of a dataset, without loading its images.

    CIFAR's are known; a folder dataset's are read from the small file written beside its
    decoded cache (the folder is decoded into the cache first if this machine has not yet).
    """
    problem = spec_problem(spec)
    if problem:
        raise DataError(problem)
    if spec in _CIFAR_SHAPES:
        return _CIFAR_SHAPES[spec]
    path = folder_path(spec)
    shape_file = _cache_file(path, None).with_suffix(".shape.json")
    if not shape_file.exists():
        _write_shape(shape_file, _load_folder(path, None))
    return DatasetShape(**json.loads(shape_file.read_text()))


def _write_shape(shape_file: Path, raw: dict) -> None:
    shape = DatasetShape(len(raw["classes"]), raw["train_x"].shape[-1], raw["train_x"].shape[1])
    _write_atomically(shape_file, lambda tmp: tmp.write_text(json.dumps(shape.__dict__)))


def has_test_split(spec: str, *, data_dir: str | Path | None = None) -> bool:
    """Whether the dataset brings its own test split (CIFAR from torchvision, a folder with test/)."""
    return _load_raw(spec, data_dir, None).get("test_x") is not None


def _cache_file(path: Path, image_size: int | None) -> Path:
    if not path.exists():
        raise DataError(f"folder dataset {path} does not exist")
    return cache_dir() / f"{path.name.split('.')[0]}-{_source_key(path, image_size)}.pt"


def _load_folder(path: Path, image_size: int | None) -> dict:
    """Decode an ImageFolder tree or archive once; later calls read the cached tensors."""
    cache_file = _cache_file(path, image_size)
    if cache_file.exists():
        try:
            return torch.load(cache_file, weights_only=True)
        except Exception:  # noqa: BLE001 - a truncated or stale cache is rebuilt, never trusted
            cache_file.unlink(missing_ok=True)
    raw = _decode_folder(path, image_size)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    _write_shape(cache_file.with_suffix(".shape.json"), raw)
    _write_atomically(cache_file, lambda tmp: torch.save(raw, tmp))
    return raw


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Several workers may decode the same folder at once; readers see a whole file or none."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _source_key(path: Path, image_size: int | None) -> str:
    """Identity of the source: path, size and mtime of the archive or of every image in the tree."""
    h = hashlib.sha256(f"v{_CACHE_VERSION}|{path.resolve()}|{image_size}".encode())
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if f != path else ''}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _iter_images(path: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    """(relative path, encoded bytes) of every image file in a tree or a tar archive."""
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            yield PurePosixPath(f.relative_to(path).as_posix()), f.read_bytes()
        return
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and PurePosixPath(member.name).suffix.lower() in IMAGE_SUFFIXES:
                    yield PurePosixPath(member.name), tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable ImageFolder tree or tar archive ({first_line(err)})") from None


def _decode_folder(path: Path, image_size: int | None) -> dict:
    """Group images by split (train/ and test/ directories, or one split) and class directory."""
    groups: dict[str, dict[str, list[torch.Tensor]]] = {}
    for rel, blob in _iter_images(path):
        if len(rel.parts) < 2:
            raise DataError(f"{path}: image {rel} is not inside a class directory")
        try:
            img = decode_rgb(blob)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise DataError(f"{path}: cannot decode {rel} ({first_line(err)})") from None
        groups.setdefault(str(rel.parent.parent), {}).setdefault(rel.parent.name, []).append(img)
    if not groups:
        raise DataError(f"{path}: no images found (expected CLASS/IMAGE files, as ImageFolder reads)")
    train, test = _pick_splits(path, groups)
    classes = sorted(set(train) | set(test or {}))
    size = image_size or _modal_size(train)
    out = dict(zip(("train_x", "train_y"), _stack(train, classes, size)))
    if test is not None:
        out.update(zip(("test_x", "test_y"), _stack(test, classes, size)))
    out["classes"] = classes
    return out


def decode_rgb(blob: bytes) -> torch.Tensor:
    """Encoded image bytes -> 3 x H x W uint8 (PIL; torchvision.io's decoders are deprecated)."""
    with Image.open(io.BytesIO(blob)) as img:
        return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous()


def _pick_splits(path: Path, groups: dict[str, dict[str, list[torch.Tensor]]]) -> tuple[dict, dict | None]:
    if len(groups) == 1:
        return next(iter(groups.values())), None
    by_name = {PurePosixPath(prefix).name: g for prefix, g in groups.items()}
    train = next((by_name[n] for n in _TRAIN_DIRS if n in by_name), None)
    test = next((by_name[n] for n in _TEST_DIRS if n in by_name), None)
    if train is None or len(groups) > 2 or (len(groups) == 2 and test is None):
        raise DataError(f"{path}: images under several roots {sorted(groups)}; expected one tree or train/ + test/")
    return train, test


def _modal_size(groups: dict[str, list[torch.Tensor]]) -> int:
    """The most common square side, so a tree of mostly-uniform images keeps its native size."""
    sizes = Counter(min(img.shape[-2:]) for imgs in groups.values() for img in imgs)
    return sizes.most_common(1)[0][0]


def _stack(groups: dict[str, list[torch.Tensor]], classes: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for label, name in enumerate(classes):
        for img in groups.get(name, []):
            images.append(img if tuple(img.shape[-2:]) == (size, size) else _square(img, size))
            labels.append(label)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def _square(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to `size` and centre-crop, as torchvision's eval transforms do."""
    return TF.center_crop(TF.resize(img, size, antialias=True), [size, size])
