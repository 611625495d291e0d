"""Picking a trial of a finished (or running) study and turning it back into a config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hybridnas.common import ConfigError, UsageError
from hybridnas.models.config import ArchConfig, parse_config
from hybridnas.objectives.study.records import TrialRecord
from hybridnas.training.documents import export_document, write_document


def trial_config(trial: FrozenTrial) -> ArchConfig:
    """The exact config the trial built, as it recorded it."""
    data = TrialRecord(trial).config
    if data is None:
        raise ConfigError(f"trial {trial.number} has no recorded config (it failed before sampling one)")
    return parse_config(data)


def _within(trial: FrozenTrial, max_params: int | None, max_macs: int | None) -> bool:
    record = TrialRecord(trial)
    params, macs = record.params, record.macs
    return (max_params is None or (params is not None and params <= max_params)) and (
        max_macs is None or (macs is not None and macs <= max_macs)
    )


def select_trial(
    study: optuna.Study,
    *,
    number: int | None = None,
    best: bool = False,
    pareto: bool = False,
    max_params: int | None = None,
    max_macs: int | None = None,
) -> FrozenTrial:
    """Exactly one of: trial `number`; the best COMPLETE trial; the Pareto-front trial with the
    highest accuracy. `max_params` / `max_macs` restrict best and Pareto picks (SAMC's question:
    the most accurate model under a parameter budget)."""
    if sum((number is not None, best, pareto)) != 1:
        raise UsageError("give exactly one of a trial number, best and pareto")
    multi = len(study.directions) > 1
    if number is not None:
        matches = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if not matches:
            raise UsageError(f"study '{study.study_name}' has no trial {number}")
        return matches[0]
    if best and multi:
        raise UsageError(f"study '{study.study_name}' is multi-objective: pick from its Pareto front "
                         "(optionally within a parameter limit)")
    if pareto and not multi:
        raise UsageError(f"study '{study.study_name}' has a single objective: pick its best trial")
    if pareto:
        candidates = study.best_trials
    else:
        candidates = [
            t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if TrialRecord(t).meets_constraints
        ]
    candidates = [t for t in candidates if _within(t, max_params, max_macs)]
    if not candidates:
        limits = " within the given limits" if max_params is not None or max_macs is not None else ""
        raise UsageError(f"study '{study.study_name}' has no completed trial{limits} yet")
    return max(candidates, key=lambda t: (t.values[0], -t.number))


def trial_training(trial: FrozenTrial) -> dict[str, Any]:
    """The training settings the trial used beyond the engine's defaults (none recorded: {})."""
    return TrialRecord(trial).training


def export_trial(study: optuna.Study, trial: FrozenTrial, out: str | Path) -> ArchConfig:
    """Write the trial's architecture and training settings, named after the study and trial."""
    cfg = trial_config(trial).model_copy(update={"name": f"{study.study_name}-trial{trial.number}"})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_document(export_document(cfg, trial_training(trial)), out)
    return cfg
