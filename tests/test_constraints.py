"""Constraints (--max-params / --max-macs) and validation of the study definition."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from helpers import CIFAR, TINY_SPACE, TINY_SPACE_TOO_BIG, tiny_study_args
from optuna.trial import TrialState

from hybridnas.objectives import objective as objective_mod
from hybridnas.storage import open_storage


@pytest.mark.integration  # a real search
@pytest.mark.usefixtures("study_env")
def test_violating_config_is_recorded_and_never_trained(
    hybridnas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "c", "--storage", url, *tiny_study_args(5, epochs=2),
                          "--max-params", "8000", "--workers", "0")
    assert code == 0, out
    storage = open_storage(url, heartbeat_interval=None)
    study = optuna.load_study(study_name="c", storage=storage)
    study.enqueue_trial(TINY_SPACE_TOO_BIG)

    trained = []
    real_train = objective_mod.train_model

    def recording_train(config, data, settings, on_epoch=None, **kwargs):
        trained.append(config)
        return real_train(config, data, settings, on_epoch=on_epoch, **kwargs)

    monkeypatch.setattr(objective_mod, "train_model", recording_train)
    code, out = hybridnas("worker", "--study", "c", "--storage", url, "--worker-id", "by-hand", "--threads", "1")
    assert code == 0, out
    assert "worker by-hand on cpu" in out

    trials = study.get_trials()
    first = trials[0]
    assert first.params == TINY_SPACE_TOO_BIG
    assert first.state == TrialState.PRUNED
    assert first.user_attrs["params"] == 53_002
    assert first.user_attrs["constraint_violation"] == "constraint violated: params 53,002 > max_params 8,000"
    assert first.constraints["max_params"] > 0
    assert first.intermediate_values == {} and "epochs_run" not in first.user_attrs
    assert "config" in first.user_attrs

    assert all(t.user_attrs["worker"] == "by-hand" for t in trials)
    feasible = [t for t in trials if "constraint_violation" not in t.user_attrs]
    assert len(trained) == len(feasible)
    assert first.user_attrs["config"] not in [c.model_dump(mode="json") for c in trained]
    for t in trials:
        over = t.user_attrs["params"] > 8000
        assert ("constraint_violation" in t.user_attrs) == over
        assert (t.constraints["max_params"] > 0) == over
        if over:
            assert t.state == TrialState.PRUNED
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) >= 5
    assert study.best_trial.user_attrs["params"] <= 8000


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--objective", "accuracy,params", "--pruner", "hyperband"], "--config/flags: pruner: Optuna cannot prune multi-objective"),
        (["--objective", "accuracy,loss"], "Invalid value for '--objective': "),
        (["--sampler", "cmaes"], "Invalid value for '--sampler': "),
        (["--space", "no-such-space"], "--config/flags: space:"),
        (["--optimizer", "lion"], "Invalid value for '--optimizer': "),
        (["--lr", "-1"], "--config/flags: training: TrainSettings(lr=-1.0): lr: Input should be greater than 0"),
    ],
)
def test_bad_definitions_name_the_field(hybridnas, tmp_path: Path, extra: list[str], message: str) -> None:
    code, out = hybridnas("launch", "--study", "bad", "--storage", f"sqlite:///{tmp_path / 'nas.db'}",
                          *tiny_study_args(4), *extra, "--workers", "0")
    assert code == 2
    assert out.startswith("error: " + message) and len(out.strip().splitlines()) == 1, out


def test_study_yaml_with_flag_overrides(hybridnas, tmp_path: Path) -> None:
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "tiny.yaml").write_text(TINY_SPACE.read_text())
    (tmp_path / "study.yaml").write_text(
        f"dataset: {CIFAR}\nspace: spaces/tiny.yaml\nepochs: 4\ntrials: 7\n"
        "objective: accuracy,macs\nmax_macs: 3000000\ntraining: {optimizer: adamw, batch_size: 32}\n"
    )
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "y", "--storage", url, "--config", tmp_path / "study.yaml",
                          "--trials", "9", "--workers", "0")
    assert code == 0, out
    study = optuna.load_study(study_name="y", storage=open_storage(url, heartbeat_interval=None))
    stored = study.user_attrs["hybridnas"]
    assert stored["trials"] == 9 and stored["epochs"] == 4 and stored["max_macs"] == 3_000_000
    assert stored["space"]["name"] == "tiny" and stored["training"] == {"optimizer": "adamw", "batch_size": 32}
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val_top1", "macs"]

    (tmp_path / "bad.yaml").write_text("dataset: cifar10\nspace: union\nepochs: 0\n")
    code, out = hybridnas("launch", "--study", "z", "--storage", url, "--config", tmp_path / "bad.yaml")
    assert code == 2 and "epochs: Input should be greater than or equal to 1" in out, out
