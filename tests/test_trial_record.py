"""The stored format does not drift, and `TrialRecord` decides what a trial was the one way."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hybridnas.objectives.study import records
from hybridnas.objectives.study.records import TrialRecord

# Studies written by every hybridnas version must open: these strings never change.
STORED = {
    "DEFINITION_ATTR": "hybridnas", "KIND_ATTR": "hybridnas_kind", "SEARCH": "search", "RETRAIN": "retrain",
    "RETRAIN_ATTR": "hybridnas_retrain", "WORKERS_ATTR": "hybridnas_workers", "ARTIFACTS_ATTR": "hybridnas_artifacts",
    "WORKER": "worker", "DEVICE": "device", "PRECISION": "precision", "PARAMS": "params", "MACS": "macs",
    "EPOCHS_RUN": "epochs_run", "FAIL_REASON": "fail_reason", "WALL_SECONDS": "wall_seconds", "PRESET": "preset",
    "ARCH_KEY": "arch_key", "CONFIG": "config", "TRAINING": "training", "DUPLICATE_OF": "duplicate_of",
    "CONSTRAINT_VIOLATION": "constraint_violation", "VAL_TOP1_PER_EPOCH": "val_top1_per_epoch",
    "IMAGES_PER_S": "images_per_s", "SECONDS_PER_EPOCH": "seconds_per_epoch",
    "PEAK_MEMORY_BYTES": "peak_memory_bytes", "SOURCE_TRIAL": "source_trial", "SOURCE_PRESET": "source_preset",
    "SEED": "seed", "TEST_TOP1": "test_top1", "TEST_IMAGES": "test_images", "LATENCY_MS_BATCH1": "latency_ms_batch1",
    "LATENCY_MS_BATCH256": "latency_ms_batch256", "TRAIN_SECONDS": "train_seconds",
    "LOCAL_SEARCH_ATTR": "local_search", "FIXED_PARAMS": "fixed_params", "RETRY_HISTORY": "retry_history",
}


def _trial(state: TrialState, number: int = 0, **attrs: Any) -> FrozenTrial:
    finished = state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    trial = optuna.trial.create_trial(state=state, value=0.5 if state == TrialState.COMPLETE else None,
                                      user_attrs=attrs, intermediate_values={1: 0.4} if finished else None)
    trial.number = number
    return trial


def test_every_stored_key_keeps_its_string() -> None:
    assert {name: getattr(records, name) for name in STORED} == STORED


@pytest.mark.parametrize("state", list(TrialState))
@pytest.mark.parametrize("marks", [{}, {"duplicate_of": 0}, {"constraint_violation": "params 9 > max_params 1"}])
def test_trained_is_its_own_architecture_complete_or_pruned(state: TrialState, marks: dict[str, Any]) -> None:
    record = TrialRecord(_trial(state, arch_key="k", **marks))

    expected = state in (TrialState.COMPLETE, TrialState.PRUNED) and not marks
    assert record.trained is record.counts_toward_budget is expected
    assert record.is_duplicate is ("duplicate_of" in marks)
    assert record.is_infeasible is ("constraint_violation" in marks)
    assert record.owns("k") is (expected or (state == TrialState.RUNNING and not marks))
    assert not record.owns("other")


def test_a_trial_of_plain_optuna_reads_as_nothing_recorded() -> None:
    record = TrialRecord(_trial(TrialState.COMPLETE, number=7))

    assert (record.config, record.worker, record.fail_reason, record.arch_key, record.params) == (None,) * 5
    assert record.training == {} and record.retry_history == []
    assert record.distinct_key == 7 and record.trained and record.meets_constraints
