"""`hybridnas status`: counts, best, throughput and ETA read back from a real SQLite storage."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hybridnas.cli.main import main
from hybridnas.objectives.study.service import study_status
from hybridnas.storage import open_storage

T0 = datetime(2026, 1, 1)


def _finished(state: TrialState, value: float | None, start_min: int, end_min: int) -> FrozenTrial:
    return FrozenTrial(
        number=0, trial_id=0, state=state, value=value, params={}, distributions={}, user_attrs={},
        system_attrs={}, intermediate_values={},
        datetime_start=T0 + timedelta(minutes=start_min), datetime_complete=T0 + timedelta(minutes=end_min),
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nas.db'}"


@pytest.fixture
def study(url: str) -> optuna.Study:
    """Four trials done in two hours (2/hour) out of a budget of 10: six left, three hours."""
    study = optuna.create_study(
        study_name="status", storage=open_storage(url, heartbeat_interval=None)
    )
    study.set_user_attr("hybridnas", {"trials": 10, "timeout": None, "space": "union"})
    study.add_trial(_finished(TrialState.COMPLETE, 3.0, 0, 30))
    study.add_trial(_finished(TrialState.COMPLETE, 1.0, 30, 60))
    study.add_trial(_finished(TrialState.PRUNED, None, 60, 90))
    study.add_trial(_finished(TrialState.COMPLETE, 2.0, 90, 120))
    study.enqueue_trial({})
    return study


def test_counts_best_throughput_eta(study: optuna.Study) -> None:
    status = study_status(study, now=T0 + timedelta(hours=2))
    assert status["trials"] == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 0, "RUNNING": 0, "WAITING": 1}
    assert (status["best_value"], status["best_trial"]) == (1.0, 1)
    assert status["throughput_per_hour"] == 2.0
    assert status["eta_s"] == 3 * 3600


def test_timeout_caps_the_eta(study: optuna.Study) -> None:
    study.set_user_attr("hybridnas", {"trials": 10, "timeout": 3 * 3600})
    assert study_status(study, now=T0 + timedelta(hours=2))["eta_s"] == 3600


@pytest.mark.parametrize("definition", [None, "garbage", {"trials": "ten", "timeout": "1h"}, {"trials": None}, {"trials": 0}, {"trials": True}])
def test_missing_or_odd_budget_is_no_eta(study: optuna.Study, definition: object) -> None:
    study.set_user_attr("hybridnas", definition)
    status = study_status(study)
    assert status["budget_trials"] is None and status["eta_s"] is None


def test_multi_objective_reports_pareto_front(tmp_path: Path) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"],
                                storage=open_storage(f"sqlite:///{tmp_path / 'mo.db'}", heartbeat_interval=None))
    for values in ([0.9, 10], [0.8, 5], [0.7, 20]):
        study.add_trial(optuna.create_trial(values=values))
    assert study_status(study)["pareto_front_size"] == 2


def test_cli_json_and_watch(study: optuna.Study, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["status", "--study", "status", "--storage", url, "--json"])
    assert json.loads(capsys.readouterr().out)["done"] == 4

    study.set_user_attr("hybridnas", {"trials": 4})
    main(["status", "--study", "status", "--storage", url, "--watch", "--interval", "0.5"])
    out = capsys.readouterr().out
    assert "4/4" in out and "best value 1" in out


def test_cli_unknown_study_is_one_line(study: optuna.Study, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["status", "--study", "nope", "--storage", url])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: no study named 'nope' in {url} (studies there: status)"
