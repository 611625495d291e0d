"""One worker: load the study by name, then run trials until the study's budget is reached.

The same loop runs inside a Ray actor (`hybridnas launch --workers N`) and by hand
(`hybridnas worker`). Optuna is the source of truth: the loop is `study.optimize` (heartbeats
only run under optimize), and between trials every worker asks the study's budget, counted
from the study's trials, whether it may start another (`BudgetGate`).
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from hybridnas.objectives.objective import (
    INTERRUPTED, Objective, TrialFailed, TrialViews, WorkerContext, WorkerStopped,
)
from hybridnas.objectives.retrain import RetrainObjective, RetrainPlan, stored_plan
from hybridnas.objectives.study.service import space_exhausted, timeout_left
from hybridnas.objectives.study.definition import StudyDefinition, stored_definition
from hybridnas.objectives.study.records import ARTIFACTS_ATTR, FAIL_REASON, TrialRecord
from hybridnas.storage import artifact_store, load_study, stale_trial_retry
from hybridnas.training.data import DataSplits, load_data, resolve_device
from hybridnas.training.measure import device_name
from hybridnas.workers.heartbeat import HEARTBEAT_INTERVAL_S, check_heartbeat

if TYPE_CHECKING:
    from hybridnas.models.config import ArchConfig
    from hybridnas.models.profile import ModelProfile

# FAIL trials do not count towards the budget, so a study whose every trial crashes (a
# learning rate that always diverges, data the models cannot fit in memory) would never end.
MAX_FAILURES_IN_A_ROW = 5
# Samples that are repeats or over the limits use no budget, so a space that produces nothing
# else would loop forever; this many in a row ends the worker with the reason.
MAX_UNTRAINED_IN_A_ROW = 50
# How often a trial whose worker died is queued again before it stays FAIL.
MAX_RETRY = 3


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def seed_offset_for(worker_id: str) -> int:
    """A stable per-worker sampler seed offset for workers started by hand."""
    return zlib.crc32(worker_id.encode()) % 10_000


_SPLIT_FIELDS = ("dataset", "data_dir", "val_fraction", "train_subset", "val_subset", "test_subset", "seed")


@functools.lru_cache(maxsize=1)
def _cached_data(split: tuple[Any, ...], device: str, with_test: bool) -> DataSplits:
    fields = dict(zip(_SPLIT_FIELDS, split))
    return load_data(fields.pop("dataset"), **fields, with_test=with_test, device=device)


def worker_data(definition: StudyDefinition, device: str, *, with_test: bool = False) -> DataSplits:
    """The study's splits, loaded once per worker process and reused by every trial."""
    return _cached_data(tuple(getattr(definition, f) for f in _SPLIT_FIELDS), device, with_test)


def check_split(definition: StudyDefinition) -> None:
    """DataError unless the dataset gives the study's split exactly as its subsets ask."""
    fields = {name: getattr(definition, name) for name in _SPLIT_FIELDS}
    load_data(fields.pop("dataset"), **fields, exact_subsets=True)


def prepare_data(definition: StudyDefinition) -> None:
    """Download / decode the dataset into the on-disk caches without keeping it in memory."""
    worker_data(definition, "cpu")
    _cached_data.cache_clear()


def _trial_note(cfg: ArchConfig, prof: ModelProfile, training: dict[str, Any]) -> str:
    # Imported on a worker's first feasible trial, so loading the worker does not load the reports.
    from hybridnas.reports import trial_note

    return trial_note(cfg, params=prof.params, macs=prof.macs, training=training, modules=prof.modules)


def _architecture_svg(cfg: ArchConfig, prof: ModelProfile, title: str) -> str:
    from hybridnas.reports import architecture_svg

    return architecture_svg(cfg, title, modules=prof.modules)


# What a search trial shows on optuna-dashboard: the note and diagram of `hybridnas.reports`.
DASHBOARD_VIEWS = TrialViews(note=_trial_note, diagram=_architecture_svg)


def run_worker(
    study_name: str,
    storage_url: str | None,
    worker_id: str | None = None,
    device: str = "auto",
    *,
    seed_offset: int | None = None,
    stop: threading.Event | None = None,
    artifacts: str | None = None,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int | None = None,
) -> dict[str, Any]:
    """Run trials of the study until its budget is reached, its deadline passes, or it is stopped.

    Between trials the worker asks the study's budget for room (`BudgetGate`): it starts a
    trial only while trials that count plus trials in flight stay under the budget, and
    otherwise waits, failing and re-queueing trials whose workers died, so a study ends with
    its full count and nothing RUNNING. `stop` ends the loop from another thread (a Ray actor's
    stop switch, or Ctrl-C under `ctrl_c_as_request`): the running trial ends as FAIL
    "interrupted" after its current training step. `heartbeat_interval` / `grace_period` (seconds; the grace period at least twice the interval, its default, see `check_heartbeat`):
    this worker's trials beat every interval, and it fails and re-queues any trial of the study
    whose last beat is older than the grace period; every worker of a study should use the
    same values. `artifacts`: where trial files go (a directory or s3://bucket/prefix; default
    the location the launch recorded in the study, else the storage's default). Returns what
    this worker did: its id, device, trial states and why it stopped.
    """
    grace_period = check_heartbeat(heartbeat_interval, grace_period)
    torch_device = resolve_device(device)
    worker_id = worker_id or default_worker_id()
    study = load_study(study_name, storage_url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                       max_retry=MAX_RETRY)
    storage = study._storage
    job = open_job(study, storage_url, seed_offset if seed_offset is not None else seed_offset_for(worker_id), stop)
    summary: dict[str, Any] = {"worker": worker_id, "device": device_name(torch_device), "trials": {}}
    store = artifact_store(storage_url, artifacts or study.user_attrs.get(ARTIFACTS_ATTR))
    context = WorkerContext(str(torch_device), worker_id, summary["device"], store, stop)
    gate = job.gate
    stopped = gate.wait_for_room()
    if stopped is not None:
        return {**summary, "stopped": stopped}

    definition = job.definition
    objective = job.objective(worker_data(definition, str(torch_device), with_test=job.with_test), context)
    ran: Counter[str] = Counter()
    failures_in_a_row = wasted_in_a_row = 0

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal failures_in_a_row, wasted_in_a_row, stopped
        ran[trial.state.name] += 1
        failures_in_a_row = failures_in_a_row + 1 if trial.state == TrialState.FAIL else 0
        record = TrialRecord(trial)
        wasted_in_a_row = wasted_in_a_row + 1 if record.is_duplicate or record.is_infeasible else 0
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            stopped = f"{failures_in_a_row} failed trials in a row"
        elif wasted_in_a_row >= MAX_UNTRAINED_IN_A_ROW:
            stopped = space_exhausted(study, definition, wasted_in_a_row)
        else:
            stopped = gate.wait_for_room()
        if stopped is not None:
            study.stop()

    try:
        study.optimize(objective, catch=(TrialFailed,), callbacks=[after_trial], gc_after_trial=True)
    except WorkerStopped:
        stopped = INTERRUPTED
    finally:
        fail_running_trials(storage, study_name, [worker_id])
    if stop is not None and stop.is_set():
        stopped = INTERRUPTED
    return {**summary, "trials": dict(ran), "stopped": stopped}


@dataclass(frozen=True)
class SearchJob:
    """A search's trials, sampled by the study's own sampler and pruner, up to its budget."""

    study: optuna.Study
    definition: StudyDefinition
    gate: BudgetGate
    with_test: bool = False

    def objective(self, data: DataSplits, context: WorkerContext) -> Objective:
        return Objective(self.definition, data, context, admit=self.gate.admit, views=DASHBOARD_VIEWS)


@dataclass(frozen=True)
class RetrainJobs:
    """A retrain's queued jobs (a source trial or a preset, and a seed), until none is left."""

    study: optuna.Study
    definition: StudyDefinition
    gate: JobGate
    plan: RetrainPlan
    source: optuna.Study

    @property
    def with_test(self) -> bool:
        return self.plan.test

    def objective(self, data: DataSplits, context: WorkerContext) -> RetrainObjective:
        return RetrainObjective(self.plan, self.source, self.definition, data, context)


def open_job(study: optuna.Study, storage_url: str | None, seed_offset: int,
             stop: threading.Event | None = None) -> SearchJob | RetrainJobs:
    """What a worker of `study` runs: a search (the study's sampler seeded with this worker's
    `seed_offset`, its pruner, its budget) or the jobs of a retrain companion (the search it
    retrains read from the same storage)."""
    plan = stored_plan(study)
    if plan is None:
        definition = stored_definition(study)
        study.sampler = definition.make_sampler(seed_offset)
        study.pruner = definition.make_pruner()
        return SearchJob(study, definition, BudgetGate(study, definition.trials, definition.timeout, stop=stop))
    source = load_study(plan.source, storage_url, heartbeat_interval=None)
    definition = stored_definition(source).model_copy(update={"train_subset": plan.train_subset})
    return RetrainJobs(study, definition, JobGate(study, stop=stop), plan, source)


class _Gate:
    """Asked between trials whether a worker may start another; waits while it cannot tell.

    While it waits it fails trials whose heartbeat went stale, which re-queues them for
    whoever has room, so a study does not end with a dead worker's trial RUNNING.
    """

    def __init__(self, study: optuna.Study, *, stop: threading.Event | None = None, poll_s: float = 1.0) -> None:
        self.study = study
        self.stop = stop
        self.poll_s = poll_s

    def wait_for_room(self) -> str | None:
        """None when a trial may start, else why not."""
        return self._poll(lambda trials, waited: self.verdict(trials))

    def _poll(self, decide: Callable[[list[FrozenTrial], bool], str | None | object]) -> str | None:
        """Ask `decide(trials, waited before)` until it does not say wait (INTERRUPTED on a stop);
        between asks, fail (and so re-queue) trials whose worker died."""
        waited = False
        while True:
            if self.stop is not None and self.stop.is_set():
                return INTERRUPTED
            verdict = decide(self.study.get_trials(deepcopy=False), waited)
            if verdict is not _WAIT:
                return verdict  # type: ignore[return-value]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
            if self.stop is not None:
                self.stop.wait(self.poll_s)
            else:
                time.sleep(self.poll_s)
            waited = True

    def verdict(self, trials: list[FrozenTrial]) -> str | None | object:
        raise NotImplementedError


_WAIT = object()


class BudgetGate(_Gate):
    """A search's budget: a trial may start while the trials that count plus those in flight
    stay under it, so workers do not overshoot. When trials in flight would fill it the worker
    waits instead of leaving: one of them may still fail (a crash, a worker that died), and a
    study must end with its full count.

    Asking between trials is not enough on its own: two workers can ask at the same moment (after
    a database restart both resume at once), both see one place left and both start a trial. So
    each new trial also asks `admit` before it samples: trial numbers are handed out atomically,
    and a trial counts only the trials in flight with lower numbers, so of two that raced the later
    one sees the earlier, waits for it, and gives its place up if the earlier one fills the budget.
    """

    def __init__(self, study: optuna.Study, budget: int, timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(study, **kwargs)
        self.budget = budget
        self.timeout = timeout

    def verdict(self, trials: list[FrozenTrial]) -> str | None | object:
        return self._room(trials, [t for t in trials if t.state == TrialState.RUNNING], deadline=True)

    def admit(self, number: int) -> str | None:
        """None when trial `number`, already RUNNING, may go on; else why it must not start.

        The worker asked the deadline just before the trial began; it is asked again only if
        the trial had to wait, so a trial that waited past it does not start after it."""
        def decide(trials: list[FrozenTrial], waited: bool) -> str | None | object:
            earlier = [t for t in trials if t.state == TrialState.RUNNING and t.number < number]
            return self._room(trials, earlier, deadline=waited)

        verdict = self._poll(decide)
        if verdict == INTERRUPTED:
            raise WorkerStopped("stopped while waiting for a place in the budget")
        return None if verdict is None else f"not started: {verdict} while it waited for trials in flight on other workers"

    def _room(self, trials: list[FrozenTrial], in_flight: list[FrozenTrial], *, deadline: bool) -> str | None | object:
        if deadline and timeout_left(self.study, self.timeout) == 0:
            return "timeout"
        used = sum(TrialRecord(t).counts_toward_budget for t in trials)
        if used >= self.budget:
            return "budget reached"
        if used + len(in_flight) + len(_retries_due(trials)) < self.budget:
            return None
        return _WAIT


# How long after a stale trial failed its re-queued copy may take to appear.
_RETRY_DUE_S = 30.0


def _retries_due(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Trials just failed for a stale heartbeat whose re-queued copy is not there yet.

    Optuna's `fail_stale_trials` fails the trial first and adds its WAITING copy after; a worker
    that asked the budget in between would otherwise take the slot with a new trial and leave
    the copy WAITING after the study ends. Such a trial has no `fail_reason` (ours always set
    one) and retries left; the wait for its copy is bounded."""
    records = [TrialRecord(t) for t in trials]
    retried = {n for r in records for n in r.retry_history}
    now = datetime.now()
    return [
        r.trial for r in records
        if r.trial.state == TrialState.FAIL and r.fail_reason is None and r.trial.number not in retried
        and len(r.retry_history) < MAX_RETRY and r.trial.datetime_complete is not None
        and (now - r.trial.datetime_complete).total_seconds() < _RETRY_DUE_S
    ]


class JobGate(_Gate):
    """A queue of enqueued jobs (retraining): start while one is WAITING; wait while one runs
    (it may fail and come back); stop when none is left."""

    def verdict(self, trials: list[FrozenTrial]) -> str | None | object:
        if any(t.state == TrialState.WAITING for t in trials):
            return None
        if any(t.state == TrialState.RUNNING for t in trials):
            return _WAIT
        return "all jobs done"


def fail_running_trials(
    storage: BaseStorage, study_name: str, worker_ids: Collection[str], reason: str = INTERRUPTED
) -> list[FrozenTrial]:
    """Mark the RUNNING trials of these workers FAIL with `reason`; returns them as they were
    before (a trial that finished meanwhile is left as it is). Each write is one transaction."""
    study_id = storage.get_study_id_from_name(study_name)
    failed = []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        record = TrialRecord(trial)
        if record.worker not in worker_ids:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            if record.fail_reason is None:
                storage.set_trial_user_attr(trial_id, FAIL_REASON, reason)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        failed.append(trial)
    return failed


def fail_and_retry(study: optuna.Study, storage: BaseStorage, worker_ids: Collection[str], reason: str) -> list[int]:
    """Fail the RUNNING trials of workers known to be dead and queue each again, as a stale
    heartbeat would, but without waiting for the grace period; returns the failed numbers.

    The re-queued copy (linked by `hybridnas.storage.retried_from`) keeps the trial's params
    and user attrs but not its `fail_reason`."""
    retry = stale_trial_retry(MAX_RETRY)
    running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if TrialRecord(t).worker in worker_ids]
    # The copy goes in before the trial fails, so that no worker ever sees the trial gone and no
    # copy yet, and starts a new trial in its budget slot instead.
    for trial in running:
        retry(study, trial)
    return [t.number for t in fail_running_trials(storage, study.study_name, worker_ids, reason)]
