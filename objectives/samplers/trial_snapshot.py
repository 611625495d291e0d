"""One read of the study's trials per trial for the sampler, not one per parameter.

Optuna 5's TPE runs with the constant liar: to see the trials other workers are running, it reads
every trial of the study from storage each time it samples, uncached. With `group=True` it
samples once per group of parameters that occur together, and once more for each parameter
outside the groups: on the union space about 90 reads of the whole study for one trial. Optuna's
own per-trial cache would not help either: under Hyperband every `suggest` hands the sampler a new
view of the study, whose cache starts empty. On SQLite those reads were two thirds of a sampled
trial's cost: about 1 s for a sample that is then rejected by a MAC limit in 50 ms
(bench/infeasible_cost.py).

`TrialSnapshotSampler` gives the wrapped sampler, for all of one trial's sampling, the study as
read once when that trial began (`before_trial`), then once more if it also asks for a pruner's
filtered view. What the constant liar needs is kept: the trials running elsewhere when the trial
began are in the snapshot; what it loses is only what other workers wrote during the trial's
own sampling, a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from hybridnas.objectives.samplers.study_view import StudyView


class TrialSnapshotSampler(BaseSampler):
    """`sampler`, reading the study's trials at most once (per view) per trial."""

    def __init__(self, sampler: BaseSampler) -> None:
        self._sampler = sampler
        self._snapshots: dict[int, StudyView] = {}

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        snapshot = self._snapshots[trial._trial_id] = StudyView(study, snapshot=True)
        self._sampler.before_trial(snapshot, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler.infer_relative_search_space(self._snapshot(study, trial), trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._sampler.sample_relative(self._snapshot(study, trial), trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._sampler.sample_independent(self._snapshot(study, trial), trial, param_name, param_distribution)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._snapshots.pop(trial._trial_id, None)
        self._sampler.after_trial(study, trial, state, values)

    def _snapshot(self, study: Study, trial: FrozenTrial) -> Study:
        """This trial's snapshot; the live study for a trial whose `before_trial` this sampler did not see."""
        return self._snapshots.get(trial._trial_id, study)  # type: ignore[return-value]
