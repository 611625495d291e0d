"""Stopping a launcher (Ctrl-C) leaves nothing RUNNING; launching again continues the same study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from helpers import check_finished_study, ctrl_c_when, tiny_study_args
from optuna.trial import TrialState

from hybridnas.storage import open_storage


@pytest.mark.usefixtures("ray_cluster")
def test_interrupted_launch_resumes_where_it_was(hybridnas, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    storage = open_storage(url, heartbeat_interval=None)
    with ctrl_c_when(lambda progress: len(progress.seen) >= 3) as sent:
        code, out = hybridnas("launch", "--study", "res", "--storage", url, *tiny_study_args(10, seed=2),
                              "--workers", "2")
    assert sent and code == 130, out
    assert "interrupted: workers stopped" in out, out

    study = optuna.load_study(study_name="res", storage=storage)
    before = {t.number: t for t in study.get_trials()}
    states = [t.state for t in before.values()]
    assert TrialState.RUNNING not in states
    finished = {n: t for n, t in before.items() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    assert 3 <= len(finished) < 10
    for t in before.values():
        if t.state == TrialState.FAIL:
            assert t.user_attrs["fail_reason"] == "interrupted"

    code, out = hybridnas("launch", "--study", "res", "--storage", url, "--workers", "2")
    assert code == 0, out
    assert "resuming study 'res'" in out
    after = {t.number: t for t in check_finished_study(url, "res", 10)}
    for number, t in finished.items():
        assert after[number].state == t.state and after[number].values == t.values
    assert min(n for n in after if n not in before) == max(before) + 1


def test_resume_refuses_a_different_definition(hybridnas, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    code, out = hybridnas("launch", "--study", "d", "--storage", url, *tiny_study_args(4), "--workers", "0")
    assert code == 0, out
    assert "start workers with: hybridnas worker --study d" in out

    code, out = hybridnas("launch", "--study", "d", "--storage", url, "--epochs", "5", "--workers", "0")
    assert code == 2
    assert "error: study 'd' exists with a different epochs" in out

    code, out = hybridnas("launch", "--study", "d", "--storage", url, "--trials", "6", "--workers", "0")
    assert code == 0, out
    study = optuna.load_study(study_name="d", storage=open_storage(url, heartbeat_interval=None))
    assert study.user_attrs["hybridnas"]["trials"] == 6
