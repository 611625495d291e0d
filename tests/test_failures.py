"""A crashed trial is FAIL with its reason, and a worker does not spin on a study that always fails."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from helpers import TEST_WORKER, tiny_study_args
from optuna.trial import TrialState

from hybridnas.storage import open_storage
from hybridnas.workers.worker import MAX_FAILURES_IN_A_ROW


@pytest.mark.integration  # a real search
@pytest.mark.usefixtures("study_env")
def test_diverging_trials_fail_with_their_reason(hybridnas, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "nan", "--storage", url, *tiny_study_args(3, epochs=1),
                          "--optimizer", "sgd", "--lr", "1e12", "--workers", "0")
    assert code == 0, out
    code, out = hybridnas("worker", "--study", "nan", "--storage", url, "--threads", "1", "--worker-id", TEST_WORKER)
    assert code == 0, out
    assert f"stopped: {MAX_FAILURES_IN_A_ROW} failed trials in a row" in out

    trials = optuna.load_study(study_name="nan", storage=open_storage(url, heartbeat_interval=None)).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * MAX_FAILURES_IN_A_ROW
    for t in trials:
        assert t.user_attrs["fail_reason"].startswith("non-finite loss at epoch 1"), t.user_attrs
        assert "params" in t.user_attrs and "config" in t.user_attrs
