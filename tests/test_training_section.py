"""A space's `training:` section is sampled per trial next to the architecture, recorded on the
trial, exported beside the architecture, and used by `hybridnas train` unless a flag overrides."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from helpers import CIFAR, TEST_WORKER, TINY_SPACE, json_in

from hybridnas.storage import open_storage

TRAINING = """
training:
  optimizer: [sgd, adamw]
  lr: {low: 0.001, high: 0.1, log: true}
  label_smoothing: [0.0, 0.1]
  batch_size: [32, 64]
"""
ARGS = ["--dataset", CIFAR, "--train-subset", "256", "--val-subset", "128", "--epochs", "1", "--seed", "0"]


@pytest.fixture
def space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(TINY_SPACE.read_text() + TRAINING)
    return path


@pytest.mark.integration  # a real search, export and train
@pytest.mark.usefixtures("study_env")
def test_sampled_settings_are_recorded_exported_and_trained_with(hybridnas, tmp_path: Path, space: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "t", "--storage", url, *ARGS, "--space", space, "--trials", "3",
                          "--weight-decay", "0.0001", "--workers", "0")
    assert code == 0, out
    code, out = hybridnas("worker", "--study", "t", "--storage", url, "--threads", "1", "--worker-id", TEST_WORKER)
    assert code == 0, out

    study = optuna.load_study(study_name="t", storage=open_storage(url, heartbeat_interval=None))
    for t in study.trials:
        training = t.user_attrs["training"]
        assert training == {
            "weight_decay": 0.0001,  # fixed by the study
            "optimizer": t.params["training.optimizer"], "lr": t.params["training.lr"],
            "label_smoothing": t.params["training.label_smoothing"], "batch_size": t.params["training.batch_size"],
        }
        assert 0.001 <= training["lr"] <= 0.1

    best = study.best_trial
    code, out = hybridnas("export", "--study", "t", "--storage", url, "--best", "-o", tmp_path / "best.yaml")
    assert code == 0, out
    exported = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert exported["training"] == best.user_attrs["training"]

    code, out = hybridnas("summary", tmp_path / "best.yaml", "--json")
    assert code == 0 and json.loads(out)["params"] == best.user_attrs["params"], out

    code, out = hybridnas("train", tmp_path / "best.yaml", *ARGS, "--out", tmp_path / "run", "--json")
    assert code == 0, out
    used = json_in(out)["training"]
    for key, value in best.user_attrs["training"].items():
        assert used[key] == value, key
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["training"]["lr"] == exported["training"]["lr"]

    other = "adam" if exported["training"]["optimizer"] != "adam" else "sgd"
    code, out = hybridnas("train", tmp_path / "best.yaml", *ARGS, "--optimizer", other, "--lr", "0.005",
                          "--out", tmp_path / "run2", "--json")
    assert code == 0, out
    used = json_in(out)["training"]
    assert (used["optimizer"], used["lr"]) == (other, 0.005)
    assert used["batch_size"] == exported["training"]["batch_size"]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("training:\n  epochs: {low: 1, high: 5}\n", "training.epochs: not a searchable training setting"),
        ("training:\n  optimizer: [sgd, lion]\n", "training.optimizer: TrainSettings(optimizer='lion')"),
        ("training:\n  lr: {low: 0.0, high: 0.1}\n", "training.lr: TrainSettings(lr=0.0): lr: Input should be greater than 0"),
        ("training:\n  lr: {low: 0.1, high: 0.01}\n", "training.lr: low 0.1 is above high 0.01"),
        ("training:\n  lr: {float: [0.1, 0.01]}\n", "training.lr: low 0.1 is above high 0.01"),
        ("training:\n  lr: {min: 0.1, max: 0.2}\n", "training.lr: {min, max} is neither a range nor a choice; accepted forms:"),
        ("training: [sgd]\n", "training: expected a mapping of training settings"),
    ],
)
def test_bad_training_sections_name_the_field(hybridnas, tmp_path: Path, section: str, message: str) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE.read_text() + section)
    code, out = hybridnas("launch", "--study", "bad", "--storage", f"sqlite:///{tmp_path / 'nas.db'}", *ARGS,
                          "--space", space, "--workers", "0")
    assert code == 2 and message in out and len(out.strip().splitlines()) == 1, out


def test_a_setting_cannot_be_both_fixed_and_searched(hybridnas, tmp_path: Path, space: Path) -> None:
    code, out = hybridnas("launch", "--study", "both", "--storage", f"sqlite:///{tmp_path / 'nas.db'}", *ARGS,
                          "--space", space, "--optimizer", "adamw", "--workers", "0")
    assert code == 2 and "training: optimizer both fixed by the study and searched by the space" in out, out


@pytest.mark.parametrize(
    ("fixed", "expected"),
    [
        ({"optimizer": "adamw", "batch_size": 64}, {"lr": 0.001, "weight_decay": 0.05, "label_smoothing": 0.0}),
        # SGD's default lr at batch 64 (0.05) lies outside the demo range [3e-4, 1e-2]: sampled.
        ({"optimizer": "sgd", "batch_size": 64}, {"weight_decay": 0.0005, "label_smoothing": 0.0}),
    ],
)
def test_a_queued_preset_trains_with_the_study_settings_that_the_space_holds(fixed, expected) -> None:
    from hybridnas.objectives.study.service import enqueue_presets
    from hybridnas.objectives.study.definition import validate_definition

    definition = validate_definition({"dataset": CIFAR, "space": "demo", "training": fixed})
    study = optuna.create_study()
    assert enqueue_presets(study, definition) == ["chae"]
    trial = study.ask()
    training = definition.search_space().suggest_training(trial)
    assert {k: training[k] for k in expected} == expected
    assert set(training) == {"lr", "weight_decay", "label_smoothing"}
    if "lr" not in expected:
        assert 3e-4 <= training["lr"] <= 1e-2
