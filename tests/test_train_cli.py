"""`hybridnas train` end to end on the real archive and on small ImageFolder trees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import CIFAR, TINY_CONFIG
import torch
from PIL import Image

from hybridnas.cli.main import main
from hybridnas.models import build, dump_config, load_config, parse_config

# The tiny config without its attention, so the checkpoint test has only conv weights.
TINY = {**TINY_CONFIG, "stages": [TINY_CONFIG["stages"][0], {**TINY_CONFIG["stages"][1], "attention": None}]}


@pytest.fixture(autouse=True)
def shared_cache(study_env: None) -> None:
    """The real archive and the decoded-data cache every real-data test shares."""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
        raise SystemExit(0)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_preset_on_archive_writes_checkpoint_metrics_and_curve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["train", "--preset", "chae", "--dataset", CIFAR, "--epochs", "1",
                          "--train-subset", "256", "--val-subset", "128", "--batch-size", "64", "--device", "cpu",
                          "--out", str(tmp_path / "run"), "--json"], capsys)
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["epochs"] == 1 and metrics["status"] == "ok" and metrics["test_top1"] is None
    assert 0.0 <= metrics["val_top1"] <= 1.0 and metrics["params"] == 370_032 and metrics["macs"] == 6_928_128
    assert metrics["images_per_s"] > 0 and len(metrics["history"]) == 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["val_top1"] == metrics["val_top1"]
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    cfg = load_config(tmp_path / "run" / "config.yaml")
    assert (cfg.input.num_classes, cfg.input.image_size) == (10, 32)
    build(cfg).load_state_dict(torch.load(tmp_path / "run" / "model.pt", weights_only=True))


def test_config_file_with_test_split_reports_test_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", 40), ("test", 10)):
        for cls in ("a", "b"):
            for i in range(n):
                img = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=gen)
                (tmp_path / "tree" / split / cls).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img.numpy()).save(tmp_path / "tree" / split / cls / f"{i}.png")
    dump_config(parse_config(TINY).with_input(num_classes=2), tmp_path / "tiny.yaml")
    code, out, err = run([
        "train", str(tmp_path / "tiny.yaml"), "--dataset", f"folder:{tmp_path / 'tree'}", "--epochs", "2",
        "--batch-size", "16", "--optimizer", "adamw", "--lr", "0.002", "--seed", "3", "--test",
        "--out", str(tmp_path / "run"), "--json"], capsys)
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test_top1"] <= 1.0 and metrics["test_top5"] == 1.0


def test_human_output_names_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dump_config(parse_config(TINY), tmp_path / "tiny.yaml")
    code, _, err = run(["train", str(tmp_path / "tiny.yaml"), "--dataset", CIFAR, "--epochs", "1",
                        "--train-subset", "128", "--val-subset", "64", "--out", str(tmp_path / "run")], capsys)
    assert code == 0 and "val top-1" in err and "model.pt" in err


@pytest.mark.parametrize("extra, message", [
    (["--dataset", "folder:/nonexistent"], "folder dataset /nonexistent does not exist"),
    (["--dataset", CIFAR, "--test"], "no test split"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--dataset", CIFAR, "--optimizer", "lion"],
     "Invalid value for '--optimizer': Value error, 'lion' is not one of 'sgd', 'adam', 'adamw'"),
    (["--dataset", CIFAR, "--lr", "-1"], "TrainSettings(lr=-1.0): lr: Input should be greater than 0"),
])
def test_user_mistakes_are_one_error_line(extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["train", "--preset", "zureick", *extra], capsys)
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_config_file_for_other_classes_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dump_config(parse_config(TINY).with_input(num_classes=100), tmp_path / "c100.yaml")
    code, _, err = run(["train", str(tmp_path / "c100.yaml"), "--dataset", CIFAR,
                        "--train-subset", "64", "--val-subset", "64"], capsys)
    assert code == 2 and "config expects 100 classes" in err


def test_a_diverged_run_prints_and_writes_valid_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """At lr 1e6 the first epoch's validation loss is NaN and the second epoch's loss stops the
    run: its metrics, printed and written, must still be JSON (null where a number is not finite)."""
    code, out, err = run(["train", "--preset", "chae", "--dataset", CIFAR, "--epochs", "2",
                          "--train-subset", "256", "--val-subset", "64", "--optimizer", "sgd", "--lr", "1000000",
                          "--device", "cpu", "--out", str(tmp_path / "run"), "--json"], capsys)
    assert code == 1, err
    printed = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    written = json.loads((tmp_path / "run" / "metrics.json").read_text(),
                         parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert printed == written and printed["status"] == "non_finite_loss"
    assert printed["history"][0]["val_loss"] is None and printed["history"][0]["train_loss"] > 1e6
