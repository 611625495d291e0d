"""One worker: load the study by name, then run trials until the study's budget is reached.

The same loop runs inside a Ray actor (`hybridnas launch --workers N`) and by hand
(`hybridnas worker`). Optuna is the source of truth: the loop is `study.optimize` with a
`MaxTrialsCallback` counting COMPLETE and PRUNED trials of the whole study, so every worker
stops when the study (not the worker) has its trials, and heartbeats run (they only do
under optimize), letting any worker fail and re-queue the trial of a worker that died.
Several workers finishing at once may overshoot the count by at most one trial each.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import zlib
from collections import Counter
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from hybridnas.objectives.objective import INTERRUPTED, Objective, TrialFailed, WorkerStopped
from hybridnas.objectives.study_definition import StudyDefinition, stored_definition
from hybridnas.storage import artifact_store, load_study, open_storage
from hybridnas.training.data import DataSplits, load_data, resolve_device

DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
# FAIL trials do not count towards the budget, so a study whose every trial crashes (a
# learning rate that always diverges, data the models cannot fit in memory) would never end.
MAX_FAILURES_IN_A_ROW = 5
HEARTBEAT_INTERVAL_S = 60


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def seed_offset_for(worker_id: str) -> int:
    """A stable per-worker sampler seed offset for workers started by hand."""
    return zlib.crc32(worker_id.encode()) % 10_000


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


@functools.lru_cache(maxsize=1)
def _cached_data(
    dataset: str,
    data_dir: str | None,
    val_fraction: float,
    train_subset: int | None,
    val_subset: int | None,
    seed: int,
    device: str,
) -> DataSplits:
    return load_data(
        dataset,
        data_dir=data_dir,
        val_fraction=val_fraction,
        train_subset=train_subset,
        val_subset=val_subset,
        seed=seed,
        device=device,
    )


def worker_data(definition: StudyDefinition, device: str) -> DataSplits:
    """The study's train/val split, loaded once per worker process and reused by every trial."""
    return _cached_data(
        definition.dataset,
        definition.data_dir,
        definition.val_fraction,
        definition.train_subset,
        definition.val_subset,
        definition.seed,
        device,
    )


def prepare_data(definition: StudyDefinition) -> None:
    """Download / decode the dataset into the on-disk caches without keeping it in memory."""
    worker_data(definition, "cpu")
    _cached_data.cache_clear()


def budget_left(study: optuna.Study, definition: StudyDefinition) -> int:
    done = len(study.get_trials(deepcopy=False, states=DONE_STATES))
    return definition.trials - done


def run_worker(
    study_name: str,
    storage_url: str | None,
    worker_id: str | None = None,
    device: str = "auto",
    *,
    seed_offset: int | None = None,
    stop: threading.Event | None = None,
    artifacts_dir: str | Path | None = None,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int | None = None,
) -> dict[str, Any]:
    """Run trials of the study until its budget (COMPLETE + PRUNED) or timeout is reached.

    `stop` lets a Ray actor end the loop from another thread: the running trial ends as FAIL
    "interrupted" at its next epoch. On Ctrl-C (KeyboardInterrupt) the running trial is
    failed the same way before the interrupt propagates, so this worker leaves nothing RUNNING.
    `heartbeat_interval` / `grace_period` (seconds, default: twice the interval): this worker's
    trials beat every interval, and it fails and re-queues any trial of the study whose last
    beat is older than the grace period; every worker of a study should use the same values.
    Returns what this worker did: its id, device, trial states and why it stopped.
    """
    worker_id = worker_id or default_worker_id()
    definition = stored_definition(load_study(study_name, storage_url, heartbeat_interval=None))
    storage = open_storage(storage_url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    offset = seed_offset if seed_offset is not None else seed_offset_for(worker_id)
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=definition.make_sampler(offset),
        pruner=definition.make_pruner(),
    )
    torch_device = resolve_device(device)
    summary: dict[str, Any] = {"worker": worker_id, "device": device_label(torch_device), "trials": {}}
    if budget_left(study, definition) <= 0:
        return {**summary, "stopped": "budget reached"}

    data = worker_data(definition, str(torch_device))
    store = FileSystemArtifactStore(str(_mkdir(artifacts_dir))) if artifacts_dir else artifact_store(storage_url)
    objective = Objective(
        definition,
        data,
        device=str(torch_device),
        worker_id=worker_id,
        device_label=summary["device"],
        artifacts=store,
        stop=stop,
    )
    ran: Counter[str] = Counter()
    failures_in_a_row = 0

    def count(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal failures_in_a_row
        ran[trial.state.name] += 1
        failures_in_a_row = failures_in_a_row + 1 if trial.state == TrialState.FAIL else 0
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            study.stop()

    def stop_requested(study: optuna.Study, trial: FrozenTrial) -> None:
        if stop is not None and stop.is_set():
            study.stop()

    callbacks = [count, MaxTrialsCallback(definition.trials, states=DONE_STATES), stop_requested]
    stopped = "budget reached"
    try:
        timeout = timeout_left(study, definition)
        if timeout is None or timeout > 0:
            study.optimize(objective, timeout=timeout, catch=(TrialFailed,), callbacks=callbacks, gc_after_trial=True)
    except WorkerStopped:
        stopped = INTERRUPTED
    finally:
        fail_running_trials(storage, study_name, [worker_id])
    if stop is not None and stop.is_set():
        stopped = INTERRUPTED
    elif failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
        stopped = f"{failures_in_a_row} failed trials in a row"
    elif budget_left(study, definition) > 0:
        stopped = "timeout"
    return {**summary, "trials": dict(ran), "stopped": stopped}


def timeout_left(study: optuna.Study, definition: StudyDefinition) -> float | None:
    """Seconds left of the study's timeout, counted from its first trial's start.

    One deadline for the whole study: a worker that joins late or a launch that resumes gets
    what is left, not a fresh timeout (`hybridnas status` computes its ETA the same way).
    """
    if definition.timeout is None:
        return None
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start is not None]
    if not starts:
        return definition.timeout
    return max(definition.timeout - (datetime.now() - min(starts)).total_seconds(), 0.0)


def fail_running_trials(
    storage: BaseStorage, study_name: str, worker_ids: Collection[str], reason: str = INTERRUPTED
) -> list[int]:
    """Mark the RUNNING trials of these workers FAIL with `reason`; returns their numbers.

    Each write is one transaction, and a trial that finished meanwhile is left as it is.
    """
    study_id = storage.get_study_id_from_name(study_name)
    failed = []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") not in worker_ids:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            if "fail_reason" not in trial.user_attrs:
                storage.set_trial_user_attr(trial_id, "fail_reason", reason)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        failed.append(trial.number)
    return failed


def _mkdir(path: str | Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
