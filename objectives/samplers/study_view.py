"""A study as a wrapping sampler hands it to the sampler it wraps: its trial lists changed,
everything else (directions, storage, attribute writes) the study's own.

Optuna's samplers read a study's trials through two methods: `_get_trials`, all of them, and
`get_trials`, those the study shows (a pruner's view, Hyperband's bracket, filters these).
`StudyView` answers both, leaving out the trials `hide` picks and, as a `snapshot`, reading each
list from storage once and keeping it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Container
from typing import Any

from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


class StudyView:
    """`study` with the trials `hide` picks left out of its trial lists; a `snapshot` reads each
    list on first use and then keeps it."""

    def __init__(
        self, study: Study, *, hide: Callable[[FrozenTrial], bool] | None = None, snapshot: bool = False
    ) -> None:
        self._study = study
        self._hide = hide
        self._snapshot = snapshot
        self._all: list[FrozenTrial] | None = None
        self._shown: list[FrozenTrial] | None = None

    def _get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        """All trials, as Optuna's samplers read them (a pruner's view does not filter these)."""
        if not self._snapshot:
            return self._visible(self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache))
        if self._all is None:
            self._all = self._visible(self._study._get_trials(deepcopy=False))
        return _select(self._all, deepcopy, states)

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        """The trials the study shows, which a pruner's view (Hyperband's bracket) filters."""
        if not self._snapshot:
            return self._visible(self._study.get_trials(deepcopy=deepcopy, states=states))
        if self._shown is None:
            self._shown = self._visible(self._study.get_trials(deepcopy=False))
        return _select(self._shown, deepcopy, states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _visible(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        hide = self._hide
        return trials if hide is None else [t for t in trials if not hide(t)]


def _select(trials: list[FrozenTrial], deepcopy: bool, states: Container[TrialState] | None) -> list[FrozenTrial]:
    chosen = trials if states is None else [t for t in trials if t.state in states]
    return copy.deepcopy(chosen) if deepcopy else chosen
