"""`hybridnas report` writes one self-contained HTML page from Optuna's plotly figures."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hybridnas.cli.main import main
from hybridnas.storage import open_storage


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nas.db'}"


def _report(url: str, study: str, out: Path) -> str:
    main(["report", "--study", study, "--storage", url, "-o", str(out)])
    return out.read_text(encoding="utf-8")


def test_single_objective_report(url: str, tmp_path: Path) -> None:
    study = optuna.create_study(study_name="single", storage=open_storage(url, heartbeat_interval=None))

    def objective(trial: optuna.Trial) -> float:
        x, y = trial.suggest_float("x", -2, 2), trial.suggest_int("y", 0, 3)
        for epoch in range(3):
            trial.report(x * x + y + 1 / (epoch + 1), epoch)
        return x * x + y

    study.optimize(objective, n_trials=6)
    page = _report(url, "single", tmp_path / "out" / "report.html")

    for title in ("Optimization History Plot", "Intermediate Values Plot", "Hyperparameter Importances"):
        assert title in page
    assert "Pareto-front Plot" not in page
    assert page.count("window.PlotlyConfig") == 1  # plotly.js inlined once
    assert "<script src=" not in page


def test_multi_objective_report(url: str, tmp_path: Path) -> None:
    study = optuna.create_study(
        study_name="multi", directions=["maximize", "minimize"], storage=open_storage(url, heartbeat_interval=None)
    )
    study.optimize(lambda t: (t.suggest_float("acc", 0, 1), t.suggest_int("params", 1, 100)), n_trials=6)
    page = _report(url, "multi", tmp_path / "report.html")

    for title in ("Optimization History Plot", "Hyperparameter Importances", "Pareto-front Plot"):
        assert title in page
    assert "no trial reported intermediate values" in page


@pytest.mark.parametrize("n_trials", [0, 1])
def test_report_with_too_few_trials(url: str, tmp_path: Path, n_trials: int) -> None:
    study = optuna.create_study(study_name="tiny", storage=open_storage(url, heartbeat_interval=None))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n_trials)
    page = _report(url, "tiny", tmp_path / "report.html")

    assert "Optimization History Plot" in page
    assert "needs at least two completed trials" in page
