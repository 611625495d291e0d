"""Local search beside TPE: some trials change one parameter of the best trial so far.

TPE keeps sampling near configs it has already tried and is slow to try the one-edit neighbours
of its best one, where better architectures most often are; local search, whose move is exactly
that edit, is among the strongest strategies on the NAS benchmarks (White et al., 2020).
`LocalSearchSampler` wraps a sampler and, after its start-up trials, gives a share of the trials
to a move: from the best trial (or with two objectives one of the Pareto front; from the next
best once every neighbour of the best was tried), change one discrete parameter to a value no
earlier trial paired with the rest, choosing the edit a ridge regression of the finished trials
predicts best (at random with two objectives; with `learn_from_pruned`, pruned trials count at the
epoch they reached). Continuous parameters are left to the wrapped
sampler, which after the first `n_shared_trials` no longer models the moves' trials. Each move
is recorded in the trial's system attr `local_search`. The numbers behind these choices, on
NAS-Bench-201 and real CIFAR-10, are in docs/benchmarks.md ("Sampler tuning on NAS-Bench-201"
leads to the runs that picked each setting).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hybridnas.objectives.samplers.study_view import StudyView
from hybridnas.objectives.study.records import LOCAL_SEARCH_ATTR, TrialRecord

# An int parameter with at most this many values is discrete, like a categorical one; a wider one
# is left to the wrapped sampler, like a float.
_ENUMERATED_INT_VALUES = 64
_SEEN_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
# The ridge penalty of the move model, in units of one trial: it shrinks an effect seen in one trial
# by about half. Penalties of 0.3 and 3 did about as well on NAS-Bench-201 (docs/benchmarks-history.md).
_RIDGE = 1.0
# Predicted gains closer than this are a tie, broken at random.
_TIE = 1e-9
# Names the move model's rung columns apart from any parameter's (name, value) column.
_RUNG = object()


@dataclass(frozen=True)
class _Move:
    base: FrozenTrial
    param: str
    value: Any


class LocalSearchSampler(BaseSampler):
    """`base_sampler` for most trials; one-parameter moves from the best trial for a share of them.

    Args:
        base_sampler: samples every trial that is not a move, and the parameters a move brings in.
        local_ratio: the share of trials after start-up that are moves.
        n_startup_trials: finished trials (COMPLETE or PRUNED) before the first move.
        n_shared_trials: trials (by number) in which the wrapped sampler models every trial,
            the moves' included; after them it models only the trials that are not moves.
        learn_from_pruned: the move model also learns from PRUNED trials, each at its last
            reported value, with one unpenalized column per rung (the step a trial reached; every
            COMPLETE trial one rung) so that a value at an early rung is compared with the others
            at that rung. Off: it learns from COMPLETE trials only.
        seed: seeds the choice of trials, parameters and values.
    """

    def __init__(
        self,
        base_sampler: BaseSampler,
        *,
        local_ratio: float = 0.5,
        n_startup_trials: int = 5,
        n_shared_trials: int = 30,
        learn_from_pruned: bool = False,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= local_ratio <= 1.0:
            raise ValueError(f"local_ratio must be between 0 and 1, got {local_ratio}")
        self._base = base_sampler
        self._local_ratio = local_ratio
        self._n_startup_trials = n_startup_trials
        self._n_shared_trials = n_shared_trials
        self._learn_from_pruned = learn_from_pruned
        # Streams apart from the wrapped sampler's, which is usually given the same seed.
        self._rng = np.random.RandomState(None if seed is None else [seed, 1])
        self._moves: dict[int, _Move] = {}

    def reseed_rng(self) -> None:
        self._base.reseed_rng()
        self._rng.seed()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)
        if TrialRecord(trial).is_enqueued or self._rng.rand() >= self._local_ratio:
            return
        move = self._choose_move(study)
        if move is not None:
            self._moves[trial._trial_id] = move
            study._storage.set_trial_system_attr(
                trial._trial_id, LOCAL_SEARCH_ATTR, {"base": move.base.number, "param": move.param}
            )

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._base.infer_relative_search_space(self._base_view(study, trial), trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if trial._trial_id in self._moves:
            return {}
        return self._base.sample_relative(self._base_view(study, trial), trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        move = self._moves.get(trial._trial_id)
        if move is not None:
            if param_name == move.param:
                return move.value
            if move.base.distributions.get(param_name) == param_distribution:
                return move.base.params[param_name]
        return self._base.sample_independent(self._base_view(study, trial), trial, param_name, param_distribution)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._moves.pop(trial._trial_id, None)
        self._base.after_trial(study, trial, state, values)

    def _base_view(self, study: Study, trial: FrozenTrial) -> Study:
        """The study as the wrapped sampler models it for `trial`: without the moves' trials once
        the shared trials are over (the parameters a move brings in are sampled with them all).

        Other workers' running moves are left out too, so TPE's constant liar does not steer away
        from them; the trials table still keeps two workers from training one config
        (objectives/study/dedup.py)."""
        if trial.number < self._n_shared_trials or trial._trial_id in self._moves:
            return study
        return StudyView(study, hide=_is_move)  # type: ignore[return-value]

    def _choose_move(self, study: Study) -> _Move | None:
        trials = study.get_trials(deepcopy=False, states=_SEEN_STATES)
        finished = [t for t in trials if t.state != TrialState.RUNNING]
        if len(finished) < self._n_startup_trials or not any(t.state == TrialState.COMPLETE for t in finished):
            return None
        complete = [t for t in finished if t.state == TrialState.COMPLETE]
        learned = [t for t in finished if t.state == TrialState.COMPLETE or t.intermediate_values] \
            if self._learn_from_pruned else complete
        for base in self._best_first(complete, study.directions):
            tried = _tried_edits(base, trials)
            options = {
                name: values for name, distribution in sorted(base.distributions.items())
                if (values := _new_values(name, distribution, base.params[name], tried))
            }
            if options:
                return _Move(base, *self._choose_edit(options, base, learned, study.directions))
        return None

    def _choose_edit(
        self, options: dict[str, list[Any]], base: FrozenTrial, learned: list[FrozenTrial],
        directions: Sequence[StudyDirection],
    ) -> tuple[str, Any]:
        """The edit of `base` the `learned` trials predict best (ties at random); with two
        objectives a random parameter, then a random value of it."""
        if len(directions) > 1:
            param = sorted(options)[self._rng.randint(len(options))]
            return param, options[param][self._rng.randint(len(options[param]))]
        edits = [(name, value) for name in sorted(options) for value in options[name]]
        gains = _predicted_gains(edits, base, learned, directions[0])
        best = np.flatnonzero(gains >= gains.max() - _TIE)
        return edits[best[self._rng.randint(len(best))]]

    def _best_first(self, complete: list[FrozenTrial], directions: Sequence[StudyDirection]) -> Iterator[FrozenTrial]:
        """The trials by rank: the best (the Pareto front, in random order), then the best of the
        rest, and so on; a move starts from the first that still has an untried neighbour."""
        remaining = complete
        while remaining:
            front = _best_trials(remaining, directions)
            yield from (front[i] for i in self._rng.permutation(len(front)))
            ranked = {t.number for t in front}
            remaining = [t for t in remaining if t.number not in ranked]


def _is_move(trial: FrozenTrial) -> bool:
    return TrialRecord(trial).is_local_search_move


def _tried_edits(base: FrozenTrial, trials: list[FrozenTrial]) -> set[tuple[str, Any]]:
    """The one-parameter edits of `base` that some trial is: (name, value) of every trial that
    differs from `base` in exactly one of the parameters they share. The parameters an edit brings
    in (a stage's blocks when the stage count grows) or drops follow from the edited value in a
    define-by-run space, so they are not compared: an edit that brings some in is tried once,
    whatever values they were sampled with."""
    tried = set()
    for trial in trials:
        differing = [name for name, value in base.params.items()
                     if name in trial.params and trial.params[name] != value]
        if len(differing) == 1:
            tried.add((differing[0], trial.params[differing[0]]))
    return tried


def _new_values(name: str, distribution: BaseDistribution, current: Any, tried: set[tuple[str, Any]]) -> list[Any]:
    """What discrete parameter `name` may change to from `current`: the values no trial has tried
    as that edit. None for a continuous parameter (or an int too wide to list)."""
    if distribution.single() or not _is_enumerable(distribution):
        return []
    if isinstance(distribution, CategoricalDistribution):
        values = list(distribution.choices)
    else:
        values = list(range(distribution.low, distribution.high + 1, distribution.step))
    return [v for v in values if v != current and (name, v) not in tried]


def _is_enumerable(distribution: BaseDistribution) -> bool:
    """Categorical, or an int with few enough values to list: what a move may change."""
    if isinstance(distribution, CategoricalDistribution):
        return True
    return isinstance(distribution, IntDistribution) and not distribution.log and \
        (distribution.high - distribution.low) // distribution.step < _ENUMERATED_INT_VALUES


def _predicted_gains(
    edits: list[tuple[str, Any]], base: FrozenTrial, learned: list[FrozenTrial], direction: StudyDirection
) -> np.ndarray:
    """How much each one-parameter edit of `base` changes the objective, as predicted by a ridge
    regression of the `learned` trials' values on their discrete parameter values (one column per
    parameter and value, an additive model: each value adds its own effect). An edit's gain is the
    new value's effect minus the old one's, sign-flipped for a minimised objective. A value no
    trial has had has effect 0. Continuous parameters are not columns: they are TPE's to search.
    With PRUNED trials among `learned`, each rung also has a column, left unpenalized, which
    takes up how much lower values are at an early epoch than at the end."""
    columns = [*edits, *((name, value) for t in learned for name, value in t.params.items()
                         if _is_enumerable(t.distributions[name]))]
    rungs = [_rung(t) for t in learned] if any(t.state == TrialState.PRUNED for t in learned) else []
    index = {column: i for i, column in enumerate(dict.fromkeys([*columns, *rungs]))}
    features = np.zeros((len(learned), len(index)))
    for row, t in enumerate(learned):
        for item in t.params.items():
            if item in index:
                features[row, index[item]] = 1.0
        if rungs:
            features[row, index[rungs[row]]] = 1.0
    values = np.array([_learned_value(t) for t in learned], dtype=float)
    if direction == StudyDirection.MINIMIZE:
        values = -values
    penalty = np.full(len(index), _RIDGE)
    penalty[[index[rung] for rung in set(rungs)]] = 0.0
    effects = np.linalg.solve(features.T @ features + np.diag(penalty), features.T @ (values - values.mean()))
    return np.array([effects[index[(name, value)]] - effects[index[(name, base.params[name])]]
                     for name, value in edits])


def _rung(trial: FrozenTrial) -> tuple[object, int | None]:
    """The rung column of a trial: the last step a PRUNED trial reported; one for every COMPLETE trial."""
    return (_RUNG, max(trial.intermediate_values) if trial.state == TrialState.PRUNED else None)


def _learned_value(trial: FrozenTrial) -> float:
    """A COMPLETE trial's value; a PRUNED trial's value at the last step it reported."""
    if trial.state == TrialState.PRUNED:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return trial.value


def _best_trials(complete: list[FrozenTrial], directions: Sequence[StudyDirection]) -> list[FrozenTrial]:
    """The trials with the best value, or with two objectives the Pareto front (the study passed to
    a sampler may be a pruner's view of it, without `best_trials`)."""
    signs = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions])
    losses = np.array([t.values for t in complete]) * signs
    dominated = [
        bool(np.any(np.all(losses <= row, axis=1) & np.any(losses < row, axis=1))) for row in losses
    ]
    return [t for t, is_dominated in zip(complete, dominated) if not is_dominated]
