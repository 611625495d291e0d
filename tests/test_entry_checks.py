"""Every input is checked where it comes in: a value a worker, `status` or the file system would
choke on later (an infinite timeout, a seed past numpy's range, a device this machine lacks, a
grace period shorter than the heartbeat, a dataset that is not there, a config name that walks
out of runs/) ends in one `error: ...` line naming the field, with exit code 2, before anything
is stored -- and a study that was stored before stays as it was.

All in-process through the CLI, on SQLite under tmp_path, with `--workers 0` (no Ray).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from helpers import TINY_CONFIG, TINY_SPACE
from PIL import Image

from hybridnas.objectives.study.definition import StudyDefinition
from hybridnas.training.outputs import default_run_dir

Run = Callable[..., tuple[int, str]]


def _one_error_line(code: int, out: str, *names: str) -> None:
    assert code == 2, out
    assert out.startswith("error: ") and out.count("\n") == 1, out
    for name in names:
        assert name in out, (name, out)


def _tree(root: Path, classes: int = 2, per_class: int = 8) -> Path:
    """A tiny ImageFolder tree of 32x32 PNGs: decodes in milliseconds."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        for i in range(per_class):
            path = root / f"class{c}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return root


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HYBRIDNAS_CACHE", str(tmp_path / "cache"))
    return f"folder:{_tree(tmp_path / 'images')}"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'entry.db'}"


def _studies(url: str) -> list[str]:
    return optuna.study.get_all_study_names(storage=url)


def _trials(url: str, name: str) -> list[tuple[int, str, Any]]:
    study = optuna.load_study(study_name=name, storage=url)
    return [(t.number, t.state.name, t.values) for t in study.get_trials()]


def _launch(hybridnas: Run, url: str, dataset: str, *extra: str) -> tuple[int, str]:
    return hybridnas("launch", "--study", "s", "--storage", url, "--workers", "0", "--dataset", dataset,
                     "--space", TINY_SPACE, *extra)


def _existing_study(hybridnas: Run, url: str, dataset: str) -> list[tuple[int, str, Any]]:
    """Study 's' with one finished trial, as a resume must leave it."""
    code, out = _launch(hybridnas, url, dataset)
    assert code == 0, out
    study = optuna.load_study(study_name="s", storage=url)
    study.tell(study.ask(), 0.5)
    return _trials(url, "s")


# Defect 3: an infinite timeout was stored; status then died and status --json printed Infinity.

@pytest.mark.parametrize("timeout", ["inf", "nan", "1e12", "0"])
def test_timeout_must_be_finite_positive_and_bounded(hybridnas: Run, url: str, data: str, timeout: str) -> None:
    _one_error_line(*_launch(hybridnas, url, data, "--timeout", timeout), "timeout")
    assert _studies(url) == []


def test_status_copes_with_a_stored_infinite_timeout_and_launch_refuses_it(hybridnas: Run, url: str, data: str) -> None:
    document = StudyDefinition(dataset=data, space=str(TINY_SPACE)).to_document()
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    study.set_user_attr("hybridnas", {**document, "timeout": math.inf})  # as older versions stored it
    study.tell(study.ask(), 0.5)
    before = _trials(url, "s")

    code, out = hybridnas("status", "--study", "s", "--storage", url)
    assert code == 0, out
    code, out = hybridnas("status", "--study", "s", "--storage", url, "--json")
    assert code == 0, out

    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    status = json.loads(out, parse_constant=refuse)
    assert status["budget_timeout_s"] is None and status["best_value"] == 0.5

    _one_error_line(*_launch(hybridnas, url, data, "--trials", "30"), "timeout")
    assert _trials(url, "s") == before
    assert optuna.load_study(study_name="s", storage=url).user_attrs["hybridnas"]["timeout"] == math.inf


def test_status_of_a_trial_with_an_infinite_value(hybridnas: Run, url: str) -> None:
    study = optuna.create_study(study_name="plain", storage=url, direction="maximize")
    study.tell(study.ask(), math.inf)  # Optuna stores it as COMPLETE
    code, out = hybridnas("status", "--study", "plain", "--storage", url)
    assert code == 0 and "best value not finite" in out, out
    code, out = hybridnas("status", "--study", "plain", "--storage", url, "--json")
    assert code == 0 and json.loads(out)["best_value"] is None, out


# Defect 4: a config's name is a label; `train` without --out wrote to runs/NAME, wherever NAME pointed.

@pytest.mark.parametrize("name, inside", [
    ("../../escaped", "escaped"), ("/tmp/absolute", "tmp-absolute"), ("team/demo-trial3", "team-demo-trial3"),
    ("..", "config"), ("", "config"), (None, "config"), ("tiny", "tiny"),
])
def test_default_run_dir_stays_under_runs(name: str | None, inside: str) -> None:
    assert default_run_dir(name) == Path("runs") / inside


def test_train_without_out_writes_under_runs(hybridnas: Run, tmp_path: Path, data: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    config = {**TINY_CONFIG, "name": "../../escaped", "input": {"image_size": 32, "num_classes": 2}}
    (work / "escaped.yaml").write_text(yaml.safe_dump(config))
    code, out = hybridnas("train", "escaped.yaml", "--dataset", data, "--epochs", "1", "--batch-size", "8",
                          "--amp", "off")
    assert code == 0, out
    assert (work / "runs" / "escaped" / "model.pt").is_file()
    assert not (tmp_path / "escaped").exists()


# Defect 6: a seed past numpy's range was stored, and the worker died on it.

@pytest.mark.parametrize("field, value", [
    ("seed", 99999999999999999999999999), ("seed", -1), ("trials", 10**7), ("trials", 0), ("epochs", 10**6),
    ("train_subset", 10**10), ("max_macs", 10**16), ("reduction_factor", 1000), ("val_fraction", 1.0),
])
def test_study_file_fields_are_bounded(hybridnas: Run, url: str, data: str, tmp_path: Path, field: str,
                                       value: Any) -> None:
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump({"dataset": data, "space": str(TINY_SPACE), field: value}))
    code, out = hybridnas("launch", "--study", "s", "--storage", url, "--workers", "0", "--config", study_file)
    _one_error_line(code, out, field)
    assert _studies(url) == []


def test_seeds_are_bounded_in_train_and_sample(hybridnas: Run, tmp_path: Path) -> None:
    huge = "99999999999999999999999999"
    _one_error_line(*hybridnas("train", "--preset", "zureick", "--dataset", "cifar10", "--seed", huge), "seed")
    _one_error_line(*hybridnas("sample", "--space", "demo", "--seed", huge, "--out", tmp_path / "s"), "seed")
    assert not (tmp_path / "s").exists()


# Defect 7: device names are checked against the machine where they come in.

def _missing_gpu() -> str:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f"cuda:{count}"


@pytest.mark.parametrize("device", ["banana", "cuda:-1", "missing-gpu"])
def test_train_device_is_checked(hybridnas: Run, device: str) -> None:
    device = _missing_gpu() if device == "missing-gpu" else device
    code, out = hybridnas("train", "--preset", "zureick", "--dataset", "cifar10", "--device", device)
    _one_error_line(code, out, "device", device)


@pytest.mark.parametrize("device", ["banana", "missing-gpu"])
def test_worker_device_is_checked(hybridnas: Run, url: str, data: str, device: str) -> None:
    before = _existing_study(hybridnas, url, data)
    device = _missing_gpu() if device == "missing-gpu" else device
    _one_error_line(*hybridnas("worker", "--study", "s", "--storage", url, "--device", device), "device", device)
    assert _trials(url, "s") == before


# Defect 8: a grace period shorter than two heartbeats lets workers fail each other's live trials.

BAD_BEAT = ("--heartbeat-interval", "60", "--grace-period", "1")


def test_grace_period_is_checked_in_launch(hybridnas: Run, url: str, data: str) -> None:
    _one_error_line(*_launch(hybridnas, url, data, *BAD_BEAT), "grace_period", "heartbeat_interval")
    assert _studies(url) == []
    before = _existing_study(hybridnas, url, data)
    _one_error_line(*_launch(hybridnas, url, data, "--trials", "30", *BAD_BEAT), "grace_period")
    assert _trials(url, "s") == before
    assert optuna.load_study(study_name="s", storage=url).user_attrs["hybridnas"]["trials"] == 20
    code, out = _launch(hybridnas, url, data, "--heartbeat-interval", "1", "--grace-period", "2")
    assert code == 0, out


def test_grace_period_is_checked_in_worker_and_retrain(hybridnas: Run, url: str, data: str) -> None:
    before = _existing_study(hybridnas, url, data)
    _one_error_line(*hybridnas("worker", "--study", "s", "--storage", url, *BAD_BEAT), "grace_period")
    _one_error_line(*hybridnas("retrain", "--study", "s", "--storage", url, "--workers", "0", *BAD_BEAT),
                    "grace_period")
    _one_error_line(*hybridnas("worker", "--study", "s", "--storage", url, "--heartbeat-interval", "0"),
                    "heartbeat")
    assert _trials(url, "s") == before
    assert _studies(url) == ["s"]  # no retrain companion either


# Defect 10: the dataset is resolved and checked at launch, even when no worker starts.

def test_dataset_is_checked_at_launch(hybridnas: Run, url: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for dataset, extra, field in [
        ("imagenet", (), "dataset"),
        (f"folder:{tmp_path / 'missing'}", (), "dataset"),
        (f"folder:{broken}", (), "dataset"),
        ("cifar10", ("--data-dir", str(a_file)), "data_dir"),
    ]:
        _one_error_line(*_launch(hybridnas, url, dataset, *extra), field)
    assert _studies(url) == []


def test_relative_folder_in_a_study_file_is_checked(hybridnas: Run, url: str, tmp_path: Path) -> None:
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump({"dataset": "folder:images-not-here", "space": str(TINY_SPACE)}))
    code, out = hybridnas("launch", "--study", "s", "--storage", url, "--workers", "0", "--config", study_file)
    _one_error_line(code, out, "dataset", str(tmp_path / "images-not-here"))
    assert _studies(url) == []


# The same kinds elsewhere: paths to write and counts of workers and threads, checked as parsed.

def test_output_paths_are_checked_before_any_work(hybridnas: Run, url: str, data: str, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("kept")
    _existing_study(hybridnas, url, data)
    for flag, argv in [
        ("--out", ("train", "--preset", "zureick", "--dataset", data, "--out", a_file)),
        ("--out", ("sample", "--space", "demo", "--out", a_file)),
        ("--out", ("sample", "--space", "demo", "--out", a_file / "below")),
        ("--output", ("export", "--study", "s", "--storage", url, "--best", "-o", tmp_path)),
        ("--output", ("report", "--study", "s", "--storage", url, "-o", tmp_path)),
        ("--export", ("launch", "--study", "s", "--storage", url, "--workers", "0", "--export", tmp_path)),
    ]:
        _one_error_line(*hybridnas(*argv), flag)
    assert a_file.read_text() == "kept"


@pytest.mark.parametrize("flag, value", [
    ("--workers", "1000000"), ("--threads", "1000000000000"), ("--cpus-per-worker", "1000000"),
    ("--gpus-per-worker", "inf"), ("--gpus-per-worker", "nan"),
])
def test_worker_counts_are_bounded(hybridnas: Run, url: str, data: str, flag: str, value: str) -> None:
    _one_error_line(*_launch(hybridnas, url, data, flag, value), flag)
    assert _studies(url) == []


# A split the dataset cannot give: found where the local workers' data is loaded, before the
# study is stored, so the corrected launch can take the name.

def test_more_images_than_the_split_has_is_refused_before_storing(
        hybridnas: Run, url: str, data: str) -> None:
    launch = ("launch", "--study", "s", "--storage", url, "--dataset", data, "--space", TINY_SPACE)
    for flag, value, said in [("--val-subset", "3", "val_subset: 3 is more than the 2 validation images"),
                              ("--train-subset", "15", "train_subset: 15 is more than the 14 training images")]:
        code, out = hybridnas(*launch, "--workers", "1", flag, value)
        _one_error_line(code, out.splitlines()[-1] + "\n", said, "16 training images")  # after the Ctrl-C hint
    assert _studies(url) == []
    _one_error_line(*hybridnas("train", "--preset", "group18", "--dataset", data, "--val-subset", "3"),
                    "val_subset: 3 is more than the 2 validation images")
    code, out = hybridnas(*launch, "--workers", "0", "--val-subset", "2", "--train-subset", "14")
    assert code == 0, out
    assert optuna.load_study(study_name="s", storage=url).user_attrs["hybridnas"]["val_subset"] == 2
