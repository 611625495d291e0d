"""The study service: what `launch`, `worker`, `status` and the Python API do to a study.

The CLI parses flags, calls one of these and prints the result; workers and `status` share the
budget and deadline arithmetic here, so a study's progress means the same thing everywhere.
"""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hybridnas.common import ConfigError, UsageError
from hybridnas.objectives.study.definition import (
    LIMITS,
    StudyDefinition,
    kind_in_words,
    stored_definition,
    study_kind,
    validate_definition,
)
from hybridnas.objectives.study.records import DEFINITION_ATTR, KIND_ATTR, PRESET, SEARCH, WORKERS_ATTR, TrialRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna


def space_exhausted(study: optuna.Study, definition: StudyDefinition, last: int) -> str:
    """Why a worker gave up after `last` samples in a row that were repeats or over the limits,
    e.g. "space exhausted: 24 distinct architectures fit max_macs 4,000,000"."""
    records = [TrialRecord(t) for t in study.get_trials(deepcopy=False)]
    distinct = {r.arch_key for r in records if r.arch_key is not None and not r.is_infeasible}
    limits = [f"{name} {getattr(definition, name):,}" for name in LIMITS
              if getattr(definition, name) is not None]
    fit = f"fit {' and '.join(limits)}" if limits else "in the space"
    return (f"space exhausted: {len(distinct)} distinct architectures {fit}; the last {last} samples "
            f"were repeats or over the limits")


def study_started(study: optuna.Study) -> datetime | None:
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start is not None]
    return min(starts) if starts else None


def timeout_left(study: optuna.Study, timeout: float | None, now: datetime | None = None) -> float | None:
    """Seconds left of a study's `timeout`, counted from its first trial's start.

    One deadline for the whole study: a worker that joins late or a launch that resumes gets
    what is left, not a fresh timeout, and `status` computes its ETA from the same deadline.
    """
    if timeout is None:
        return None
    started = study_started(study)
    if started is None:
        return timeout
    return max(timeout - ((now or datetime.now()) - started).total_seconds(), 0.0)


def create_or_resume(
    study_name: str, storage_url: str | None, given: dict[str, Any], source: str = "study definition",
    check: Callable[[StudyDefinition], None] | None = None,
) -> tuple[optuna.Study, StudyDefinition, bool]:
    """(study, definition, created). A resume may change the budget, nothing else.

    `given` holds the definition fields the caller set (a study YAML, flags, a notebook's
    arguments); `source` names them in errors. Resuming with nothing given keeps the stored
    definition as it is. Only a search study is resumed; an existing study of another kind (a
    retrain companion, a plain Optuna study with trials) or shape (other directions) is refused
    before anything is written to it. `check` runs on a new study's definition before it is
    stored, so what it refuses leaves the name free for the corrected definition.
    """
    import optuna
    from optuna.exceptions import ExperimentalWarning

    from hybridnas.storage import open_storage

    storage = open_storage(storage_url, heartbeat_interval=None)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        study = None
    kind = None if study is None else study_kind(study)
    if study is not None and kind != SEARCH and (kind is not None or study.get_trials(deepcopy=False)):
        raise UsageError(f"study {study_name!r} is {kind_in_words(study)}, not a search; "
                         "launch the search under another study name")
    if study is not None and kind == SEARCH:
        stored = stored_definition(study)
        if not given:
            return study, stored, False
        requested = validate_definition({**stored.to_document(), **given}, source)
        changed = requested.differences(stored)
        if changed:
            raise UsageError(
                f"study '{study_name}' exists with a different {', '.join(changed)}; resume it without "
                "changing those, or choose another study name"
            )
        _check_directions(study, requested)
        if requested != stored:
            study.set_user_attr(DEFINITION_ATTR, requested.to_document())
        return study, requested, False
    if "dataset" not in given:
        raise ConfigError(f"{source}: dataset: a new study needs a dataset")
    definition = validate_definition(given, source)
    if check is not None:
        check(definition)
    if study is None:
        study = optuna.create_study(study_name=study_name, storage=storage, directions=definition.directions)
    else:
        _check_directions(study, definition)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        study.set_metric_names(definition.metric_names)
    study.set_user_attr(DEFINITION_ATTR, definition.to_document())
    study.set_user_attr(KIND_ATTR, SEARCH)
    return study, definition, True


def _check_directions(study: optuna.Study, definition: StudyDefinition) -> None:
    """Refuse a definition whose objectives do not fit the existing study's directions: Optuna
    cannot change them, and a value per missing direction would fail every trial."""
    have = [d.name.lower() for d in study.directions]
    if have != definition.directions:
        raise UsageError(
            f"study {study.study_name!r} has {len(have)} direction(s) ({', '.join(have)}) and the definition's "
            f"objective {definition.objective!r} needs {len(definition.directions)} "
            f"({', '.join(definition.directions)}); choose another study name"
        )


def enqueue_presets(study: optuna.Study, definition: StudyDefinition) -> list[str]:
    """Queue the paper presets the space can express, at the dataset's input size and class count.

    A preset trains with the study's settings (the fixed ones, the optimizer's defaults for the
    rest) wherever the space's `training:` ranges hold them, as `retrain --presets` trains it, so
    the search starts from the preset as a user would train it, not at a sampled learning rate.
    Only the dataset's shape is read (class count and image size), never its images.
    """
    from hybridnas.training.data import dataset_shape

    shape = dataset_shape(definition.dataset, data_dir=definition.data_dir)
    space = definition.search_space()
    training = space.training_params(definition.train_settings("cpu"))
    found = space.warm_start(num_classes=shape.num_classes, image_size=shape.image_size)
    for name, params in found:
        study.enqueue_trial({**params, **training}, user_attrs={PRESET: name}, skip_if_exists=True)
    return [name for name, _ in found]


_STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def _positive(value: Any) -> float | None:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return value if is_number and value > 0 else None


def _stored_budget(study: optuna.Study) -> tuple[int | None, float | None]:
    """The trial count and timeout (seconds) stored with the study, if any.

    Read defensively: studies created by plain Optuna, or by older hybridnas, have none.
    """
    definition = study.user_attrs.get(DEFINITION_ATTR)
    if not isinstance(definition, dict):
        return None, None
    trials = definition.get("trials")
    return (_positive(trials) if isinstance(trials, int) else None), _positive(definition.get("timeout"))


def study_status(study: optuna.Study, now: datetime | None = None) -> dict[str, Any]:
    """Counts, best result, throughput and ETA of a study as one JSON-ready dict.

    Throughput is finished (COMPLETE, PRUNED, FAIL) trials per hour of the study's wall time;
    the ETA extrapolates the rate of trials that count towards the budget, capped by the
    timeout counted from the first trial's start (see `timeout_left`).
    """
    now = now or datetime.now()
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state.name == state for t in trials) for state in _STATES}
    done = sum(TrialRecord(t).counts_toward_budget for t in trials)
    finished = counts["COMPLETE"] + counts["PRUNED"] + counts["FAIL"]
    started = study_started(study)
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    active = counts["RUNNING"] + counts["WAITING"] > 0
    end = now if active or not ends else max(ends)
    wall_s = (end - started).total_seconds() if started else 0.0
    hours = wall_s / 3600
    budget_trials, budget_timeout = _stored_budget(study)

    eta_s = None
    if budget_trials is not None and done and hours > 0:
        eta_s = max(budget_trials - done, 0) / (done / hours) * 3600
    left = timeout_left(study, budget_timeout, now)
    if left is not None and started:
        eta_s = left if eta_s is None else min(eta_s, left)

    return {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "trials": counts,
        "done": done,
        "workers": _workers(study),
        **_best(study, counts["COMPLETE"]),
        "wall_time_s": round(wall_s, 1),
        "throughput_per_hour": round(finished / hours, 2) if hours > 0 else None,
        "budget_trials": budget_trials,
        "budget_timeout_s": budget_timeout,
        "eta_s": round(eta_s, 1) if eta_s is not None else None,
    }


def _workers(study: optuna.Study) -> list[dict[str, Any]]:
    """The Ray workers launches recorded: each one's state (running, stopped, died) and why."""
    recorded = study.user_attrs.get(WORKERS_ATTR)
    if not isinstance(recorded, dict):
        return []
    return [{"worker": worker_id, **record} for worker_id, record in recorded.items() if isinstance(record, dict)]


def _best(study: optuna.Study, complete: int) -> dict[str, Any]:
    if not complete:
        return {}
    if len(study.directions) > 1:
        return {"pareto_front_size": len(study.best_trials)}
    best = study.best_trial
    return {"best_value": best.value, "best_trial": best.number}


def budget_reached(status: dict[str, Any]) -> bool:
    """Whether a `study_status` says the study is over: its trial count, or its deadline passed."""
    by_trials = status["budget_trials"] is not None and status["done"] >= status["budget_trials"]
    by_time = status["budget_timeout_s"] is not None and status["eta_s"] == 0 and not status["trials"]["RUNNING"]
    return by_trials or by_time
