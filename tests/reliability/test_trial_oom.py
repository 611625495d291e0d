"""Out of memory inside a trial: that trial is FAIL naming it, the worker goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import tiny_study_args
from faults import PgStudy
from optuna.trial import TrialState

from hybridnas.objectives import objective as objective_module
from hybridnas.workers.worker import run_worker

TRIALS = 3


def test_out_of_memory_fails_only_that_trial(
    hybridnas, pg_study: PgStudy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = pg_study
    code, out = hybridnas(
        "launch", "--study", s.name, "--storage", s.url, *tiny_study_args(TRIALS, epochs=2), "--workers", "0"
    )
    assert code == 0, out
    real_train = objective_module.train_model
    calls = []

    def oom_on_first_trial(cfg, data, settings, **kwargs):
        calls.append(cfg)
        if len(calls) == 1:
            # What the CUDA caching allocator raises; the first line is what a trial records.
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore detail")
        return real_train(cfg, data, settings, **kwargs)

    monkeypatch.setattr(objective_module, "train_model", oom_on_first_trial)
    result = run_worker(s.name, s.url, "oom-w", "cpu", artifacts=str(tmp_path / "artifacts"))

    assert result["stopped"] == "budget reached", result
    trials = s.trials()
    assert trials[0].state == TrialState.FAIL
    reason = trials[0].user_attrs["fail_reason"]
    assert reason.startswith("out of memory on cpu") and "Tried to allocate 20.00 GiB" in reason, reason
    assert "more detail" not in reason  # one line
    assert [t.state for t in trials[1:]].count(TrialState.FAIL) == 0
    assert s.done() == TRIALS and len(calls) == TRIALS + 1
    assert result["trials"].get("FAIL") == 1
