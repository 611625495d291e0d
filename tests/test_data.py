"""Data loading, caching, splitting and batched augmentation, on the real CIFAR-10 JPEG archive."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import ARCHIVE, CIFAR, TEST_CACHE
from PIL import Image

from hybridnas.training import data as data_mod
from hybridnas.training.augment import cutout, random_crop, random_flip, random_rotation
from hybridnas.training.data import DataError, load_data, stratified_split

SPEC = CIFAR


@pytest.fixture(autouse=True)
def shared_cache(study_env: None) -> Path:
    return TEST_CACHE


def write_tree(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> None:
    """An ImageFolder tree: root/<split>/<class>/<i>.png with the given (h, w) per image."""
    gen = torch.Generator().manual_seed(0)
    for where, shapes in sizes.items():
        for i, (h, w) in enumerate(shapes):
            path = root / where / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            img = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=gen)
            Image.fromarray(img.numpy()).save(path)


def test_archive_loads_as_uint8_tensors_with_imagefolder_classes() -> None:
    d = load_data(SPEC, train_subset=500, val_subset=200)
    assert d.train_x.shape == (500, 3, 32, 32) and d.train_x.dtype == torch.uint8
    assert d.val_x.shape == (200, 3, 32, 32) and d.val_y.dtype == torch.int64
    assert d.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert (d.num_classes, d.image_size, d.channels) == (10, 32, 3)
    assert d.test_x is None and d.test_y is None
    assert all(0.4 < m < 0.55 for m in d.mean) and all(0.2 < s < 0.3 for s in d.std)


def test_subsets_are_class_balanced_prefixes() -> None:
    d = load_data(SPEC, train_subset=1000, val_subset=300)
    assert d.train_y.bincount(minlength=10).tolist() == [100] * 10
    assert d.val_y.bincount(minlength=10).tolist() == [30] * 10


def test_val_split_does_not_depend_on_train_subset_but_on_seed() -> None:
    small = load_data(SPEC, train_subset=100, val_subset=500)
    large = load_data(SPEC, train_subset=2000, val_subset=500)
    other_seed = load_data(SPEC, train_subset=100, val_subset=500, seed=1)
    assert torch.equal(small.val_x, large.val_x)
    assert torch.equal(small.train_x, large.train_x[:100])
    assert not torch.equal(small.val_x, other_seed.val_x)


def test_a_subset_over_its_part_of_the_split_is_an_error_only_when_exact() -> None:
    with pytest.raises(DataError) as info:
        load_data(SPEC, val_subset=5000, test_subset=10_000, exact_subsets=True)
    assert str(info.value) == ("val_subset: 5,000 is more than the 4,000 validation images there are "
                               f"({SPEC}: 40,000 training images after 10,000 held out as test images, "
                               "val_fraction 0.1); ask for fewer or raise val_fraction")
    stored = load_data(SPEC, train_subset=64, val_subset=5000, test_subset=10_000)  # as studies stored before
    assert len(stored.val_x) == 4000


def test_full_split_is_ten_percent_per_class() -> None:
    d = load_data(SPEC, val_fraction=0.1)
    assert d.val_y.bincount().tolist() == [500] * 10
    assert d.train_y.bincount().tolist() == [4500] * 10


def test_stratified_split_indices_are_disjoint_complete_and_seeded() -> None:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([500, 300, 120, 7, 1])])
    train, val = stratified_split(labels, 0.2, seed=3)
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(len(labels)))
    assert labels[val].bincount(minlength=5).tolist() == [100, 60, 24, 1, 0]
    again_train, again_val = stratified_split(labels, 0.2, seed=3)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    assert not torch.equal(val, stratified_split(labels, 0.2, seed=4)[1])


def test_second_load_reads_the_cache_instead_of_decoding(monkeypatch: pytest.MonkeyPatch, shared_cache: Path) -> None:
    first = load_data(SPEC, train_subset=64, val_subset=64)
    assert list(shared_cache.glob("cifar10-train-jpeg-*.pt"))

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(data_mod, "_decode_folder", no_decoding)
    second = load_data(SPEC, train_subset=64, val_subset=64)
    assert torch.equal(first.train_x, second.train_x)


def test_corrupt_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDNAS_CACHE", str(tmp_path / "cache"))
    write_tree(tmp_path / "tree", {"a": [(8, 8)] * 3, "b": [(8, 8)] * 3})
    first = load_data(f"folder:{tmp_path / 'tree'}", val_fraction=0.34)
    (cache_file,) = (tmp_path / "cache").glob("*.pt")
    cache_file.write_bytes(b"truncated")
    second = load_data(f"folder:{tmp_path / 'tree'}", val_fraction=0.34)
    assert torch.equal(first.train_x, second.train_x)


def test_folder_tree_with_train_and_test_dirs_and_mixed_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDNAS_CACHE", str(tmp_path / "cache"))
    write_tree(tmp_path / "tree", {
        "train/cat": [(16, 16), (16, 16), (20, 24)],
        "train/dog": [(16, 16), (16, 16), (16, 16)],
        "test/cat": [(16, 16)],
        "test/dog": [(30, 16)],
    })
    d = load_data(f"folder:{tmp_path / 'tree'}", val_fraction=0.34, with_test=True)
    assert d.classes == ["cat", "dog"] and d.image_size == 16
    assert d.test_x.shape == (2, 3, 16, 16) and d.test_y.tolist() == [0, 1]
    assert len(d.train_x) + len(d.val_x) == 6


@pytest.mark.parametrize("spec, message", [
    ("folder:/nonexistent/cifar", "does not exist"),
    ("imagenet", "unknown dataset"),
])
def test_missing_or_unknown_dataset_is_one_line_data_error(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        load_data(spec)
    assert "\n" not in str(info.value)


def test_corrupt_archive_and_image_are_data_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDNAS_CACHE", str(tmp_path / "cache"))
    bad_tar = tmp_path / "broken.tar.gz"
    bad_tar.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="not a readable ImageFolder"):
        load_data(f"folder:{bad_tar}")
    write_tree(tmp_path / "tree", {"a": [(8, 8)] * 2, "b": [(8, 8)] * 2})
    (tmp_path / "tree" / "b" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot decode b/1\.png"):
        load_data(f"folder:{tmp_path / 'tree'}")


def test_test_split_requested_but_absent_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no test split"):
        load_data(SPEC, with_test=True)


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image() -> None:
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    windows = [[padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)] for i in range(16)]
    assert all(any(torch.equal(out[i], w) for w in windows[i]) for i in range(16))
    assert torch.equal(random_crop(x, 0, torch.Generator()), x)


def test_flip_mirrors_about_half_the_images() -> None:
    x = torch.randint(0, 256, (400, 3, 4, 4), dtype=torch.uint8)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped | kept).all()) and 150 < int(flipped.sum()) < 250


def test_cutout_zeroes_one_square_per_image() -> None:
    x = torch.ones(64, 3, 32, 32)
    out = cutout(x, 8, torch.Generator().manual_seed(0))
    zeroed = (out[:, 0] == 0).sum(dim=(1, 2))
    assert bool((zeroed <= 64).all()) and bool((zeroed > 0).all()) and int((zeroed == 64).sum()) > 20
    assert torch.equal(out[:, 0] == 0, out[:, 2] == 0)


def test_rotation_by_zero_degrees_is_identity_and_rotates_otherwise() -> None:
    x = torch.rand(4, 3, 16, 16)
    assert torch.allclose(random_rotation(x, 0.0, torch.Generator()), x, atol=1e-5)
    rotated = random_rotation(x, 15.0, torch.Generator().manual_seed(0))
    assert rotated.shape == x.shape and not torch.allclose(rotated, x, atol=1e-2)


def test_cifar10_reads_the_jpeg_export_in_the_data_dir_without_downloading() -> None:
    via_name = load_data("cifar10", data_dir=ARCHIVE.parent, train_subset=64, val_subset=32)
    via_folder = load_data(SPEC, train_subset=64, val_subset=32)
    assert torch.equal(via_name.train_x, via_folder.train_x)
    assert torch.equal(via_name.val_y, via_folder.val_y)
    assert via_name.classes[0] == "airplane"
