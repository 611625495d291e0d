"""export -> summary -> train: an exported config rebuilds exactly the model its trial measured."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from helpers import ARCHIVE, TEST_WORKER, precision_flags, tiny_study_args
from optuna.trial import TrialState

from hybridnas.models.config import load_config
from hybridnas.storage import open_storage


@pytest.fixture
def searched(hybridnas, tmp_path: Path) -> str:
    """A small single-objective study run by one worker in this process."""
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "e", "--storage", url, *tiny_study_args(4, epochs=2), "--workers", "0")
    assert code == 0, out
    code, out = hybridnas("worker", "--study", "e", "--storage", url, "--threads", "1", "--worker-id", TEST_WORKER)
    assert code == 0, out
    return url


@pytest.mark.integration  # a real search
@pytest.mark.usefixtures("study_env")
def test_export_summary_train_round_trip(hybridnas, searched: str, tmp_path: Path) -> None:
    study = optuna.load_study(study_name="e", storage=open_storage(searched, heartbeat_interval=None))
    best = study.best_trial
    code, out = hybridnas("export", "--study", "e", "--storage", searched, "--best", "-o", tmp_path / "best.yaml")
    assert code == 0, out
    assert f"trial {best.number} (COMPLETE" in out
    assert load_config(tmp_path / "best.yaml").name == f"e-trial{best.number}"

    code, out = hybridnas("summary", tmp_path / "best.yaml", "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert (summary["params"], summary["macs"]) == (best.user_attrs["params"], best.user_attrs["macs"])

    # the study's splits, epochs, seed, the worker's thread count and the trial's precision: its own run again
    code, out = hybridnas("train", tmp_path / "best.yaml", "--dataset", f"folder:{ARCHIVE}", "--train-subset", "256",
                          "--val-subset", "128", "--epochs", "2", "--seed", "0", "--threads", "1",
                          *precision_flags(best.user_attrs["precision"]), "--out", tmp_path / "run", "--json")
    assert code == 0, out
    metrics = json.loads(out[out.index("{"):])
    assert metrics["params"] == best.user_attrs["params"]
    assert (metrics["val_top1"], metrics["device"]) == (best.value, best.user_attrs["device"]) == (best.value, "cpu (1 threads)")
    assert metrics["precision"] == best.user_attrs["precision"]

    last = study.get_trials()[-1]
    code, out = hybridnas("export", "--study", "e", "--storage", searched, "--trial", last.number,
                          "-o", tmp_path / "last.json")
    assert code == 0, out
    assert json.loads((tmp_path / "last.json").read_text())["stages"] == last.user_attrs["config"]["stages"]


@pytest.mark.integration  # a real search
def test_export_refuses_what_the_study_cannot_answer(hybridnas, searched: str, tmp_path: Path) -> None:
    out_file = tmp_path / "x.yaml"
    for args, message in [
        (["--pareto"], "has a single objective: pick its best trial"),
        (["--best", "--trial", "0"], "choose exactly one of"),
        (["--trial", "99"], "has no trial 99"),
        (["--best", "--max-params", "1"], "no completed trial within the given limits"),
    ]:
        code, out = hybridnas("export", "--study", "e", "--storage", searched, *args, "-o", out_file)
        assert code == 2 and message in out, (args, out)
    assert not out_file.exists()
    code, out = hybridnas("export", "--study", "nope", "--storage", searched, "--best", "-o", out_file)
    assert code == 2 and "no study named 'nope'" in out


@pytest.mark.integration  # a real search
@pytest.mark.usefixtures("study_env")
def test_pareto_export_under_a_parameter_budget(hybridnas, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "mo", "--storage", url, *tiny_study_args(4, epochs=1),
                          "--objective", "accuracy,params", "--workers", "0")
    assert code == 0, out
    code, out = hybridnas("worker", "--study", "mo", "--storage", url, "--threads", "1", "--worker-id", TEST_WORKER)
    assert code == 0, out
    study = optuna.load_study(study_name="mo", storage=open_storage(url, heartbeat_interval=None))
    assert all(t.state == TrialState.COMPLETE for t in study.get_trials())
    assert all(t.values[1] == t.user_attrs["params"] for t in study.get_trials())
    front = study.best_trials
    smallest = min(front, key=lambda t: t.values[1])
    code, out = hybridnas("export", "--study", "mo", "--storage", url, "--pareto",
                          "--max-params", int(smallest.values[1]), "-o", tmp_path / "small.yaml")
    assert code == 0, out
    assert f"trial {smallest.number} " in out
    code, out = hybridnas("export", "--study", "mo", "--storage", url, "--best", "-o", tmp_path / "b.yaml")
    assert code == 2 and "is multi-objective: pick from its Pareto front" in out
