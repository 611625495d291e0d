"""TrialSnapshotSampler: the study sampler reads the study's trials once per trial, on real SQLite
storage under Hyperband as workers run it, and samples exactly what it would with live reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import BaseDistribution
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hybridnas.objectives.samplers.local_search import LocalSearchSampler
from hybridnas.objectives.study.definition import StudyDefinition
from hybridnas.objectives.samplers.trial_snapshot import TrialSnapshotSampler
from hybridnas.storage import open_storage

KINDS = ["conv", "mbconv", "attention"]


def stages(trial: optuna.Trial) -> float:
    """Conditional like the union space: a stage count, then per stage a kind and that kind's own
    knobs; one epoch reported, as a worker does, so that Hyperband assigns the trial a bracket."""
    score = 0.0
    for i in range(trial.suggest_int("n_stages", 1, 4)):
        kind = trial.suggest_categorical(f"s{i}.kind", KINDS)
        width = trial.suggest_int(f"s{i}.{kind}.width", 8, 64, step=8)
        depth = trial.suggest_int(f"s{i}.{kind}.depth", 1, 4)
        ratio = trial.suggest_float(f"s{i}.{kind}.ratio", 0.5, 4.0)
        score += KINDS.index(kind) + width / 64 - abs(depth - 2) - abs(ratio - 2)
    trial.report(score, 1)
    if trial.should_prune():
        raise optuna.TrialPruned
    return score


def study_sampler(seed: int = 0) -> optuna.samplers.BaseSampler:
    return StudyDefinition(dataset="cifar10", seed=seed).make_sampler()


def count_study_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every read of a study's trials from the database."""
    reads: list[int] = []
    read = RDBStorage._get_trials

    def counted(self: RDBStorage, *args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return read(self, *args, **kwargs)

    monkeypatch.setattr(RDBStorage, "_get_trials", counted)
    return reads


def reads_per_trial(sampler: optuna.samplers.BaseSampler, url: str, monkeypatch: pytest.MonkeyPatch) -> float:
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    study = optuna.create_study(storage=open_storage(url), direction="maximize", sampler=sampler, pruner=pruner)
    study.optimize(stages, n_trials=20)
    reads = count_study_reads(monkeypatch)
    study.optimize(stages, n_trials=10)
    return len(reads) / 10


def test_the_study_sampler_reads_the_trials_a_few_times_per_trial_not_once_per_parameter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_snapshot = reads_per_trial(study_sampler(), f"sqlite:///{tmp_path / 'snapshot.db'}", monkeypatch)
    monkeypatch.undo()
    tpe = optuna.samplers.TPESampler(seed=0, multivariate=True, group=True)
    live = reads_per_trial(LocalSearchSampler(tpe, seed=0), f"sqlite:///{tmp_path / 'live.db'}", monkeypatch)

    assert with_snapshot <= 4
    assert live >= 2 * with_snapshot


def test_a_snapshot_samples_the_same_trials_as_live_reads() -> None:
    def run(wrap: bool) -> list[dict[str, Any]]:
        sampler: optuna.samplers.BaseSampler = LocalSearchSampler(
            optuna.samplers.TPESampler(seed=3, multivariate=True, group=True), seed=3)
        study = optuna.create_study(direction="maximize", sampler=TrialSnapshotSampler(sampler) if wrap else sampler)
        study.optimize(stages, n_trials=40)
        return [t.params for t in study.trials]

    assert run(wrap=True) == run(wrap=False)


class RunningTrialsSeen(optuna.samplers.RandomSampler):
    """Records, for each trial it samples, the other trials running when it sampled."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.running: dict[int, list[int]] = {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        running = study._get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        self.running[trial.number] = [t.number for t in running if t.number != trial.number]
        return super().sample_independent(study, trial, param_name, param_distribution)


def test_each_trial_sees_the_trials_other_workers_are_running_as_it_starts(tmp_path: Path) -> None:
    recorder = RunningTrialsSeen()
    url = f"sqlite:///{tmp_path / 'workers.db'}"
    first = optuna.create_study(study_name="s", storage=open_storage(url), sampler=TrialSnapshotSampler(recorder))
    second = optuna.load_study(study_name="s", storage=open_storage(url), sampler=TrialSnapshotSampler(recorder))

    elsewhere = first.ask()
    elsewhere.suggest_float("x", 0, 1)
    here = second.ask()
    here.suggest_float("x", 0, 1)
    first.tell(elsewhere, 0.5)
    later = second.ask()
    later.suggest_float("x", 0, 1)

    assert recorder.running == {0: [], 1: [0], 2: [1]}
