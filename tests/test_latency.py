"""Latency as an objective and a limit: measured at batch 1 on the worker's device before a
sample trains, so a sample that is too slow costs no training and no budget."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from helpers import TINY_SPACE_TOO_BIG, tiny_study_args
from optuna.trial import TrialState

from hybridnas.objectives import objective as objective_mod
from hybridnas.objectives.study.records import CONSTRAINT_VIOLATION, EPOCHS_RUN, LATENCY_MS_BATCH1, PARAMS
from hybridnas.storage import open_storage


@pytest.mark.integration  # a real worker
@pytest.mark.usefixtures("study_env")
def test_a_sample_over_the_latency_limit_is_timed_recorded_and_never_trained(
    hybridnas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "slow", "--storage", url, *tiny_study_args(3, epochs=1),
                          "--max-params", "8000", "--max-latency-ms", "0.001", "--workers", "0")
    assert code == 0, out
    assert "constraints: max_params 8,000, max_latency_ms 0.001" in out
    study = optuna.load_study(study_name="slow", storage=open_storage(url, heartbeat_interval=None))
    study.enqueue_trial(TINY_SPACE_TOO_BIG)
    trained: list[object] = []
    monkeypatch.setattr(objective_mod, "train_model", lambda config, *args, **kwargs: trained.append(config))

    code, out = hybridnas("worker", "--study", "slow", "--storage", url, "--worker-id", "by-hand", "--threads", "1")

    assert code == 0, out
    assert "space exhausted" in out and "fit max_params 8,000 and max_latency_ms 0.001" in out
    assert trained == []
    over_size, *sampled = study.get_trials()
    assert over_size.params == TINY_SPACE_TOO_BIG and over_size.state == TrialState.PRUNED
    assert LATENCY_MS_BATCH1 not in over_size.user_attrs  # refused by its size, before any timing
    timed = [t for t in sampled if t.user_attrs[PARAMS] <= 8000]
    assert timed and all(LATENCY_MS_BATCH1 not in t.user_attrs for t in sampled if t not in timed)
    for t in timed:
        latency = t.user_attrs[LATENCY_MS_BATCH1]
        assert t.state == TrialState.PRUNED and latency > 0.001
        assert t.user_attrs[CONSTRAINT_VIOLATION] == (
            f"constraint violated: latency (ms, batch 1) {latency:,} > max_latency_ms 0.001")
        assert t.constraints["max_latency_ms"] == pytest.approx(latency / 0.001 - 1)
        assert t.constraints["max_params"] <= 0
        assert EPOCHS_RUN not in t.user_attrs and t.intermediate_values == {}


@pytest.mark.integration  # a real search
@pytest.mark.usefixtures("study_env")
def test_accuracy_and_latency_make_a_pareto_front_that_exports_and_reports(hybridnas, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "fast", "--storage", url, *tiny_study_args(3, epochs=1),
                          "--objective", "accuracy,latency", "--pruner", "none", "--workers", "0")
    assert code == 0, out
    code, out = hybridnas("worker", "--study", "fast", "--storage", url, "--worker-id", "by-hand", "--threads", "1")
    assert code == 0, out

    study = optuna.load_study(study_name="fast", storage=open_storage(url, heartbeat_interval=None))
    assert study.metric_names == ["val_top1", "latency"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 3
    for t in done:
        assert t.values[1] == t.user_attrs[LATENCY_MS_BATCH1] > 0
        assert t.user_attrs[EPOCHS_RUN] == 1

    code, out = hybridnas("export", "--study", "fast", "--storage", url, "--pareto", "-o", tmp_path / "best.yaml")
    assert code == 0, out
    front = {t.number for t in study.best_trials}
    assert any(f"trial {n} " in out for n in front), out
    code, out = hybridnas("report", "--study", "fast", "--storage", url, "-o", tmp_path / "report.html")
    assert code == 0, out
    assert "val top-1 against latency at batch 1 (ms)" in (tmp_path / "report.html").read_text()
    code, out = hybridnas("retrain", "--study", "fast", "--storage", url, "--pareto", "--epochs", "1",
                          "--workers", "0")
    assert code == 0, out
    assert f"{len(front)} job(s) queued" in out  # the Pareto front, one seed each
