"""What the report reads from a study's trials: the trained architectures and their scores, the
leaderboard, the retrained results, and where the compute went (outcomes and workers).

Everything is read defensively: a study made by plain Optuna has none of hybridnas's user
attrs, and one made by an older hybridnas may lack some.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hybridnas.common import ConfigError
from hybridnas.models.config import ArchConfig
from hybridnas.objectives.study.results import trial_config
from hybridnas.objectives.retrain import companion_name, retrain_results
from hybridnas.objectives.study.records import WORKERS_ATTR, TrialRecord

LEADERBOARD_SIZE = 20


@dataclass(frozen=True)
class Scored:
    """A trained trial and its first-objective score: a COMPLETE trial's value, or the best
    intermediate value of a trial the pruner stopped (`complete` False)."""

    trial: FrozenTrial
    score: float
    complete: bool

    @property
    def record(self) -> TrialRecord:
        """What the trial stored: its size, preset, worker, architecture key."""
        return TrialRecord(self.trial)

    @functools.cached_property
    def config(self) -> ArchConfig | None:
        """The architecture it trained; None for a trial without a (readable) config."""
        try:
            return trial_config(self.trial)
        except ConfigError:
            return None


def maximizes(study: optuna.Study) -> bool:
    return study.directions[0] == StudyDirection.MAXIMIZE


@dataclass(frozen=True)
class Metric:
    """How the first objective is shown: a short name, its unit, the factor and format to show
    it with, and whether more is better."""

    name: str
    unit: str
    scale: float
    fmt: str
    maximize: bool

    @property
    def label(self) -> str:
        """For axis titles and column headers: 'val top-1 (%)'."""
        return f"{self.name} ({self.unit})" if self.unit else self.name

    def number(self, value: float) -> str:
        return format(value * self.scale, self.fmt)

    def show(self, value: float) -> str:
        """For sentences: 'val top-1 35.0%'."""
        return f"{self.name} {self.number(value)}{self.unit}"


def first_metric(study: optuna.Study) -> Metric:
    """hybridnas's val top-1 in percent; any other study's first objective as it is."""
    if study.metric_names and study.metric_names[0] == "val_top1":
        return Metric("val top-1", "%", 100.0, ".1f", maximizes(study))
    name = study.metric_names[0] if study.metric_names else "objective value"
    return Metric(name, "", 1.0, ".4g", maximizes(study))


def trained(study: optuna.Study, trials: Sequence[FrozenTrial]) -> list[Scored]:
    """Every trial that trained an architecture of its own (`TrialRecord.trained`) and has a score:
    COMPLETE, or PRUNED after at least one reported epoch."""
    best = max if maximizes(study) else min
    out = []
    for t in trials:
        if not TrialRecord(t).trained:
            continue
        if t.state == TrialState.COMPLETE:
            out.append(Scored(t, t.values[0], True))
        elif t.state == TrialState.PRUNED and t.intermediate_values:
            out.append(Scored(t, best(t.intermediate_values.values()), False))
    return out


def pareto_numbers(study: optuna.Study) -> set[int]:
    """The trial numbers on a two-objective study's Pareto front (none for one objective)."""
    if len(study.directions) == 1:
        return set()
    return {t.number for t in study.best_trials}


def leaderboard(study: optuna.Study, points: Sequence[Scored], limit: int = LEADERBOARD_SIZE) -> list[Scored]:
    """The best distinct architectures, one per `arch_key`: the Pareto front first (two
    objectives), then COMPLETE trials by score, then those the pruner stopped by their best epoch."""
    front = pareto_numbers(study)
    sign = -1.0 if maximizes(study) else 1.0
    ranked = sorted(points, key=lambda p: (p.trial.number not in front, not p.complete, sign * p.score, p.trial.number))
    picked: dict[Any, Scored] = {}
    for p in ranked:
        picked.setdefault(p.record.distinct_key, p)
    return list(picked.values())[:limit]


def retrained(study: optuna.Study) -> list[dict[str, Any]]:
    """The `retrain_results` rows of the study's companion (retrained trials and papers' presets);
    [] when it has none."""
    try:
        # Study has no public accessor for its storage; the companion lives in the same one.
        companion = optuna.load_study(study_name=companion_name(study.study_name), storage=study._storage)
    except KeyError:
        return []
    return retrain_results(companion)


def busy_seconds(trial: FrozenTrial, now: datetime) -> float:
    """How long the trial held its worker: its recorded `wall_seconds`, else its duration so far."""
    wall = TrialRecord(trial).wall_seconds
    if isinstance(wall, (int, float)):
        return float(wall)
    if trial.datetime_start is None:
        return 0.0
    return ((trial.datetime_complete or now) - trial.datetime_start).total_seconds()


OUTCOMES = {
    "trained": "trained to the end (COMPLETE)",
    "pruned": "trained, then pruned by the pruner",
    "infeasible": "infeasible: over max_params / max_macs / max_latency_ms, never trained",
    "duplicate": "duplicate: reused an earlier trial's result",
    "failed": "failed",
    "running": "running",
    "waiting": "waiting (queued)",
}


def outcome(trial: FrozenTrial) -> str:
    """Which one of OUTCOMES a trial is."""
    by_state = {TrialState.RUNNING: "running", TrialState.WAITING: "waiting", TrialState.FAIL: "failed"}
    if trial.state in by_state:
        return by_state[trial.state]
    record = TrialRecord(trial)
    if record.is_infeasible:
        return "infeasible"
    if record.is_duplicate:
        return "duplicate"
    return "trained" if trial.state == TrialState.COMPLETE else "pruned"


def outcome_rows(trials: Sequence[FrozenTrial], now: datetime) -> list[dict[str, Any]]:
    """Per outcome: how many trials and how much worker time, so a user sees where compute went."""
    rows = {key: {"outcome": key, "label": label, "trials": 0, "busy_s": 0.0} for key, label in OUTCOMES.items()}
    for t in trials:
        row = rows[outcome(t)]
        row["trials"] += 1
        row["busy_s"] += busy_seconds(t, now)
    return list(rows.values())


def fail_reasons(trials: Sequence[FrozenTrial], top: int = 5) -> list[tuple[str, int]]:
    """The most common first lines of failed trials' `fail_reason`."""
    reasons = Counter(
        str(TrialRecord(t).fail_reason or "no reason recorded").splitlines()[0][:200]
        for t in trials if t.state == TrialState.FAIL
    )
    return reasons.most_common(top)


def worker_rows(study: optuna.Study, trials: Sequence[FrozenTrial], now: datetime) -> list[dict[str, Any]]:
    """Per worker (the trials' `worker` attr and the launches' record of Ray workers): trials,
    trained, busy time, trials per hour of its span, device, host and state (died, and why)."""
    recorded = study.user_attrs.get(WORKERS_ATTR)
    recorded = {k: v for k, v in recorded.items() if isinstance(v, dict)} if isinstance(recorded, dict) else {}
    by_worker: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        worker = TrialRecord(t).worker
        if worker is not None:
            by_worker.setdefault(str(worker), []).append(t)
    rows = []
    for worker in [*by_worker, *(w for w in recorded if w not in by_worker)]:
        mine = by_worker.get(worker, [])
        record = recorded.get(worker, {})
        starts = [t.datetime_start for t in mine if t.datetime_start is not None]
        ends = [t.datetime_complete or now for t in mine if t.datetime_start is not None]
        hours = (max(ends) - min(starts)).total_seconds() / 3600 if starts else 0.0
        finished = sum(t.state.is_finished() for t in mine)
        devices = Counter(str(device) for t in mine if (device := TrialRecord(t).device))
        rows.append({
            "worker": worker,
            "trials": len(mine),
            "trained": sum(TrialRecord(t).counts_toward_budget for t in mine),
            "busy_s": sum(busy_seconds(t, now) for t in mine),
            "per_hour": finished / hours if hours > 0 else None,
            "device": ", ".join(d for d, _ in devices.most_common()),
            "host": str(record.get("host") or ""),
            "state": str(record.get("state") or ""),
            "reason": str(record.get("reason") or ""),
        })
    return rows
